"""Registries of the analysis families (see fer_models.registry for the mechanism)."""

from fer_models.registry import Registry

EXPLAINERS: Registry = Registry("explainer", "fer_analysis.explainers")
PROBES: Registry = Registry("probe", "fer_analysis.probes")
