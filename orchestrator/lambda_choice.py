"""λ for the grid and the layer ablation, chosen on the validation results of the λ ablation."""

from __future__ import annotations

from orchestrator import tracking
from orchestrator.config import GridConfig, resolve_lambda
from orchestrator.studies import expand


def choose_lambda(grid_cfg: GridConfig, experiment_id: str | None, uri: str | None = None) -> tuple[float, str]:
    """λ for the grid and the layer ablation, chosen on the validation split.

    Paper 002 estimates λ "using validation by covering values that range from less than
    1 to 20" on RAF-DB and transfers it to AffectNet; Sec. 4.3 calls a good value "one that
    improves localization without decreasing classification accuracy". So: among the λ of
    the finished λ ablation whose mean validation CL (over seeds) is not below the
    vanilla (w/o AU) model's, take the one with the highest validation CAM-COS (ATT-COS
    when a method has no CAM); if none qualifies, the λ with the highest validation CL.
    Only ablation runs whose config matches this grid's exactly are used. Test metrics are
    never read. An explicit ``lam`` wins; with no ablation, ``default_lam``. A grid without
    AU trials (``au: [false]``) has no λ to choose: ``default_lam``, never read.
    """
    if grid_cfg.lam is not None:  # the precedence: orchestrator.config.resolve_lambda
        return resolve_lambda(grid_cfg)
    if not any(grid_cfg.au):  # no trial trains with the AU loss (the seed papers' presets, identity targets)
        return float(grid_cfg.default_lam), "unused (no trial trains with the AU loss)"
    if experiment_id is None:
        return float(grid_cfg.default_lam), "default (no λ ablation yet)"
    expected = {t.hash: t for t in expand(grid_cfg, "lambda")}
    done = tracking.finished_trials(experiment_id, uri)
    runs = [(expected[h], done[h]) for h in expected if h in done]
    scores: dict[float | None, list[tuple[float, float]]] = {}
    for trial, run in runs:
        m = run.data.metrics
        cl = m.get("best_val_cl")
        loc = m.get("best_val_cam_cos", m.get("best_val_att_cos", float("nan")))
        if cl is None:
            continue
        key = float(trial.cfg.lam) if trial.cfg.au else None
        scores.setdefault(key, []).append((cl, loc))
    lams = {k: v for k, v in scores.items() if k is not None}
    if not lams:
        return float(grid_cfg.default_lam), "default (no finished λ ablation matches this grid)"

    def mean(v: list[tuple[float, float]], i: int) -> float:
        xs = [x[i] for x in v if x[i] == x[i]]
        return sum(xs) / len(xs) if xs else float("-inf")

    floor = mean(scores[None], 0) if None in scores else float("-inf")
    ok = [k for k, v in lams.items() if mean(v, 0) >= floor]
    if ok:
        best = max(ok, key=lambda k: (mean(lams[k], 1), mean(lams[k], 0)))
        why = "highest val CAM-COS without lowering val CL"
    else:
        best = max(lams, key=lambda k: mean(lams[k], 0))
        why = "highest val CL (every λ lowered val CL)"
    return resolve_lambda(grid_cfg, best, f"validation: {why}, on {grid_cfg.ablation_on()} ({len(runs)} runs)")
