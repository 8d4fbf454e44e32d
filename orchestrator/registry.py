"""Registries of the orchestrator's families (see fer_models.registry for the mechanism).

- ``PRESETS``: named starting points of a :class:`~orchestrator.config.GridConfig`, one
  module per preset in ``orchestrator/presets/``;
- ``STUDIES``: what a grid invocation can run (Table-1 grid, λ and layer ablations), one
  module per study in ``orchestrator/studies/``.
"""

from fer_models.registry import Registry

PRESETS: Registry = Registry("preset", "orchestrator.presets")
STUDIES: Registry = Registry("study", "orchestrator.studies", plural="studies")
