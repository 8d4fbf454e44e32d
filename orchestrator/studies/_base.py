"""What every study shares (not a registry entry: the name starts with ``_``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator

if TYPE_CHECKING:  # the study modules stay importable without pandas/mlflow
    import pandas as pd

    from fer_models.config import TrainConfig
    from orchestrator.config import GridConfig


class Study:
    """A study of a grid invocation: the trials it needs and its section of the report.

    Subclasses are registered in :data:`orchestrator.registry.STUDIES` under the name that
    ``fer-orch ablate``, the ``fer_orch.study`` tag of its trial runs and the report use.
    """

    #: position in the report, the paper's order (Tables 1-2, Table 3, Fig. 5)
    order: ClassVar[int] = 100
    #: runs before the other studies (the λ ablation: the driver chooses λ from its runs)
    runs_first: ClassVar[bool] = False
    #: an ablation: `fer-orch ablate NAME`, and `fer-orch grid` runs it unless --no-ablations
    ablation: ClassVar[bool] = False
    #: `fer-orch grid` runs it (an ablation: unless --no-ablations); False: only `fer-orch ablate NAME`
    in_grid: ClassVar[bool] = True
    #: the report's sentence when the study has no finished trial
    missing: ClassVar[str] = ""

    def configs(self, g: "GridConfig", lam: float) -> Iterable["TrainConfig"]:
        """The configs of the study's trials, built with ``g.train_config`` (duplicates are
        fine: :func:`orchestrator.studies.expand` keeps each config once); ``lam`` is the λ
        the study uses where it does not vary λ itself."""
        raise NotImplementedError

    def report(self, parent: Any, df: "pd.DataFrame", out: Path) -> list[str]:
        """Markdown parts of the study's section from its finished runs (``df`` is
        :func:`orchestrator.tables.runs_frame`, ``parent`` the MLflow parent run); files
        (CSV, PNG) go into ``out``."""
        raise NotImplementedError


class Ablation(Study):
    """An ablation of paper 002's kind: ``g.ablation_method`` on one dataset
    (``g.ablation_on()``), the w/o-AU model plus one w/-AU model per variant, for each seed of
    ``g.seeds_of_ablations()`` (``ablation_seeds``, else ``seeds``).
    Subclasses give the variants as ``TrainConfig`` fields."""

    ablation = True
    #: `fer-orch ablate NAME` options the study does not use -> why (given, they are refused)
    ignores: ClassVar[dict[str, str]] = {
        "methods": "an ablation trains the ablation method only (set ablation_method in a --config file)"}

    def variants(self, g: "GridConfig", lam: float) -> Iterable[dict[str, Any]]:
        """The ``TrainConfig`` fields of each w/-AU model (e.g. ``{"lam": 2.0, "layers": [5]}``)."""
        raise NotImplementedError

    def configs(self, g: "GridConfig", lam: float) -> Iterator["TrainConfig"]:
        ds, m = g.ablation_on(), g.ablation_method
        for seed in g.seeds_of_ablations():
            yield g.train_config(m, ds, au=False, seed=seed)
            for fields in self.variants(g, lam):
                yield g.train_config(m, ds, au=True, seed=seed, **fields)
