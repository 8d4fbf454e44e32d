"""Registry entries (``EXPLAINERS``): one module per explainer, imported on first lookup.

The bases a new explainer builds on are re-exported here from ``_base``.
"""

from fer_analysis.explainers._base import Explainer, ReluBackpropExplainer

__all__ = ["Explainer", "ReluBackpropExplainer"]
