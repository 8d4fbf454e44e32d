"""What every explanation job shares: the spec it reads, how it is registered, how it is run.

A job is one module of ``fer_analysis.jobs`` with one function registered by
:func:`register_job` (the module's import registers it; ``fer_analysis.registry.JOBS`` imports
every module of the package whose name does not start with ``_``)::

    from fer_analysis.jobs._base import ExplainSpec, register_job

    @register_job("my-job", split="test", needs=("dense-head",), paper="003")
    def my_job(model, loader, out_dir: Path, spec: ExplainSpec, *, num_classes=None,
               device="cpu", progress=False, context=None) -> dict[str, float]:
        \"\"\"One line that ``fer-orch list jobs`` shows.\"\"\"
        ...  # write PNG / CSV / Markdown / JSON files into out_dir
        return {"my_job_metric": 1.0}  # logged as MLflow metrics of the explained run

- ``model``: the trained network in eval mode; ``loader``: the run's ``split`` (``train`` or
  ``test``), never augmented, yielding the data contract's dicts (``fer_analysis.topn.iter_batches``
  also accepts ``(image, label)`` tuples); ``num_classes``: the number of classes the network
  predicts (None: read it from the logits).
- ``context`` (optional keyword; a job that does not declare it is called without it): the
  run's :class:`fer_analysis.run_labels.RunContext`: its ``target`` (``expression`` or
  ``identity``: read the classes with ``fer_analysis.run_labels.class_labels``), class names,
  whether it was trained with the AU loss, and ``compare`` (``backtrack --compare-run``).
  A job that makes no sense for an identity run raises ``NotApplicableError`` saying why.
- ``needs`` says what the job requires of the model or the data (``au-labels``,
  ``dense-head``, ``relu-modules`` ...). A job that finds the *model* unsuited raises
  ``fer_analysis.hooks.NotApplicableError`` (the run reports the job as skipped, with the
  reason); missing *data* (no AU labels) is a ``FerOrchError`` (a user mistake).
- A job must leave no hook on the model (the runner checks it after every job).

``orchestrator.explain`` runs the jobs on trained MLflow runs over Ray actors; in a notebook,
:func:`run_job` runs one on an in-memory model and loader.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from fer_analysis.registry import JOBS
from fer_models.errors import ConfigError

SPLITS = ("train", "test")


def register_job(name: str, *, split: str, needs: Iterable[str] = (), paper: str = "",
                 aliases: Iterable[str] = ()) -> Callable:
    """Decorator registering an explanation job in ``JOBS`` with its metadata; each alias is an
    entry of its own whose ``alias_of`` names the job (``fer-orch explain --job ALIAS`` works,
    the results are logged under the job's own name)."""
    if split not in SPLITS:
        raise ValueError(f"job '{name}': split must be one of {SPLITS}, got '{split}'")
    meta = dict(split=split, needs=tuple(needs), paper=paper)

    def deco(fn: Callable) -> Callable:
        JOBS.register(name, **meta)(fn)
        for alias in aliases:
            JOBS.register(alias, **meta, alias_of=name.lower(), description=f"alias of {name}")(fn)
        return fn

    return deco


def job_names() -> list[str]:
    """The registered jobs, without their aliases."""
    return [n for n in JOBS.names() if "alias_of" not in JOBS.meta(n)]


def canonical_job(name: str) -> str:
    """The job a name (or an alias) stands for; ``UnknownNameError`` listing the jobs otherwise."""
    return JOBS.meta(name).get("alias_of", name.lower())


@dataclass(frozen=True)
class ExplainSpec:
    """What the explain jobs compute; the same for every run of one ``fer-orch explain`` call.

    ``top_n``, ``cases`` and ``images`` default to ``n`` when given (the old single ``--n``
    option, kept), else to 8 (``top_n``: 10, the images paper 001 shows per filter).
    """

    jobs: tuple[str, ...] = ("topn",)
    layer: str | None = None  # tap layer for topn / filter-au; None: the deepest conv layer
    top_n: int | None = None  # topn / filter-au: images shown per filter
    cases: int | None = None  # backtrack: faces backtracked (misclassified first)
    images: int | None = None  # block-maps: test images shown with their per-block Grad-CAM
    filters: int = 10  # filters shown (paper 001 shows 10 of 256)
    max_images: int | None = 2000  # images scanned for topn / filter-au (None: the whole split)
    au_threshold: float = 0.0  # AU present when intensity > this
    bins: int = 5  # filter-au: equal-frequency bins per filter (fer_analysis.filter_au.BINS)
    min_count: int = 20  # filter-au: units with and without an AU below which it is not tested
    permutations: int = 1000  # filter-au: permutations of the AU labels for the null
    au_frames: str = "expressive"  # filter-au: "expressive" (neutral rows left out) or "all"
    permute_within: str = "none"  # filter-au: "class" permutes only among units of one expression
    gradcam_layers: tuple[str, ...] | None = None  # block-maps: None = the paper's blocks (paper 004 Fig. 2)
    compare_run: str | None = None  # backtrack: a second run backtracked on the same images
    compare_images: int = 256  # backtrack --compare-run: test images compared
    batch_size: int = 64
    device: str = "auto"
    data_options: dict = field(default_factory=dict)  # reader options over the run's own (--data-opt)
    n: InitVar[int | None] = None

    def __post_init__(self, n: int | None) -> None:
        for name in ("top_n", "cases", "images"):
            if getattr(self, name) is None:  # paper 001 shows 10 images per filter
                object.__setattr__(self, name, (10 if name == "top_n" else 8) if n is None else int(n))

    @property
    def max_batches(self) -> int | None:
        """Batches that hold ``max_images`` images (None: the whole split)."""
        return None if self.max_images is None else max(1, math.ceil(self.max_images / self.batch_size))

    def check(self) -> "ExplainSpec":
        """Fail on user mistakes before any run is loaded; returns the spec with each job
        under its own name (aliases resolved, repeats dropped)."""
        if not self.jobs:
            raise ConfigError(f"no explain job given; pass --job with one of: {', '.join(job_names())}")
        bad = [j for j in self.jobs if j not in JOBS]
        if bad:
            aliases = [n for n in JOBS.names() if n not in job_names()]
            known = ", ".join(job_names()) + (f" (aliases: {', '.join(aliases)})" if aliases else "")
            raise ConfigError(f"unknown explain job(s) {', '.join(bad)}; known jobs: {known}")
        counts = {"--top-n": self.top_n, "--cases": self.cases, "--images": self.images, "--filters": self.filters,
                  "--min-count": self.min_count, "--compare-images": self.compare_images}
        low = {k: v for k, v in counts.items() if v < 1}
        if low:
            raise ConfigError("must be at least 1: " + ", ".join(f"{k} (got {v})" for k, v in low.items()))
        if self.bins < 2 or self.permutations < 0:
            raise ConfigError(f"--bins must be at least 2 and --permutations at least 0, got {self.bins} and "
                              f"{self.permutations}")
        from fer_analysis.filter_au import FRAMES, WITHIN

        if self.au_frames not in FRAMES or self.permute_within not in WITHIN:
            raise ConfigError(f"--au-frames must be one of {', '.join(FRAMES)} and --permute-within one of "
                              f"{', '.join(WITHIN)}, got '{self.au_frames}' and '{self.permute_within}'")
        jobs = tuple(dict.fromkeys(canonical_job(j) for j in self.jobs))
        if self.compare_run and "backtrack" not in jobs:
            raise ConfigError("--compare-run compares the backtracking of two runs; add --job backtrack")
        return dataclasses.replace(self, jobs=jobs)


def run_job(name: str, model, loader, out_dir: str | Path, spec: ExplainSpec, *, num_classes: int | None = None,
            device: str = "cpu", progress: bool = False, context=None) -> dict[str, Any]:
    """Run the job ``name`` (or an alias) on an in-memory model and loader; returns its metrics.
    ``context`` (a ``fer_analysis.run_labels.RunContext``) reaches the jobs that declare it."""
    import inspect

    fn = JOBS.get(canonical_job(name))
    kw = dict(num_classes=num_classes, device=device, progress=progress)
    if "context" in inspect.signature(fn).parameters:
        kw["context"] = context
    return fn(model, loader, Path(out_dir), spec, **kw)
