"""Paper 002's tables and figures, rebuilt from MLflow alone (`fer-orch report`).

The report has one section per study, in the paper's order, written by the study itself
(``orchestrator/studies/``): Tables 1, 2 and 1b with ``deltas.png`` (``grid``), Table 3
(``layers``), Fig. 5 (``lambda``), then the audited models (:mod:`orchestrator.audit_report`).
This module finds the runs and assembles the sections; what the sections share (the runs as
a data frame, mean ± sd over seeds, paired intervals, cell formatting, the method and dataset
order, Markdown tables) is :mod:`orchestrator.tables`.

Which runs: for each study, the latest grid invocation that contained it
(:func:`orchestrator.tracking.study_runs`), and for each of its configs the latest FINISHED
trial run, whichever invocation trained it. Everything lands in ``--out`` (default
``FER_ORCH_HOME/report/<experiment>``) as Markdown + CSV + PNG, is printed, and is logged
under ``report/`` of the parent run.

Against the paper: paper 002's published numbers (Tables 1-3, Fig. 5) are data,
``orchestrator/published/paper002.csv`` (one row per number, with the line of the paper's
text or the figure it was typed from). On runs of the paper's datasets (RAF-DB, AffectNet)
each study's section adds a table of ours beside the published value and the difference
(:func:`orchestrator.tables.vs_paper`); on synthetic data one line says why there is none
(:data:`orchestrator.tables.NO_PUBLISHED`). Ours is the class-mean cosine (the "Average" row
the paper prints) where the runs have it, else the per-sample mean.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_models import paths
from fer_models.errors import FerOrchError
from orchestrator import studies, tracking
from orchestrator.audit_report import audit_section
from orchestrator.studies.au_source import faithfulness_table
from orchestrator.tables import NO_PUBLISHED, on_paper_data, runs_frame


@dataclass
class Report:
    out: Path
    markdown: str
    files: list[Path] = field(default_factory=list)
    parent_run_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _write_report(exp: Any, experiment: str, uri: str, out: Path) -> tuple[list[str], list[str], dict[str, int]]:
    """The report's tables and figures into ``out`` (report.md last): its markdown parts,
    the grid parent runs it read, and the trial count of each study."""
    parts = [f"# fer-orch report: experiment `{experiment}`\n\nMLflow store: `{uri}`"]
    counts: dict[str, int] = {}
    parent_ids = []
    real = False
    for name in studies.report_order():
        parent, runs = tracking.study_runs(exp.experiment_id, name, uri)
        counts[name] = len(runs)
        if runs:
            parent_ids.append(parent.info.run_id)
            df = runs_frame(runs)
            real = real or on_paper_data(df)
            parts += studies.get(name).report(parent, df, out)
            if name == "grid":  # faithfulness beside Table 1

                parts += faithfulness_table(df, out)
        else:
            parts.append(studies.get(name).missing)

    parts += audit_section(exp.experiment_id, out, uri)  # the audited models (`fer-orch audit`), if any
    if any(counts.values()) and not real:
        parts.insert(1, NO_PUBLISHED)
    (out / "report.md").write_text("\n\n".join(parts) + "\n")
    return parts, parent_ids, counts


def build_report(experiment: str = "fer-orch", uri: str | None = None, out: str | Path | None = None,
                 log: bool = True) -> Report:
    """Rebuild the tables and figures of ``experiment`` into ``out`` (see module docstring)."""
    from orchestrator.config import check_experiment_name

    check_experiment_name(experiment)
    uri = tracking.resolve_uri(uri)
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise FerOrchError(
            f"no MLflow experiment '{experiment}' in {uri}; run `fer-orch grid` first or pass --experiment/--tracking-uri"
        )
    out = Path(out) if out is not None else paths.home() / "report" / experiment
    out.mkdir(parents=True, exist_ok=True)
    # The report is written into a folder of its own first: only those files are copied to
    # `out` and uploaded, never whatever else `out` holds (`--out ~` must not publish ~/.ssh).
    with tempfile.TemporaryDirectory(prefix=".fer-orch-report-", dir=out) as stage_dir:
        stage = Path(stage_dir)
        parts, parent_ids, counts = _write_report(exp, experiment, uri, stage)
        written = sorted(p.name for p in stage.iterdir() if p.is_file())
        for name in written:
            shutil.copy2(stage / name, out / name)
        files = [out / name for name in written]
        report = Report(out, "\n\n".join(parts) + "\n", files, parent_ids[0] if parent_ids else None, counts)
        if log:
            for pid in dict.fromkeys(parent_ids):
                tracking.log_to_run(pid, stage, "report", uri=uri)
    return report
