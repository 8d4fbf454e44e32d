"""Registries of the analysis families (see fer_models.registry for the mechanism)."""

from fer_models.registry import Registry

EXPLAINERS: Registry = Registry("explainer", "fer_analysis.explainers")
JOBS: Registry = Registry("explain job", "fer_analysis.jobs", cli_name="jobs")  # entries: fer_analysis.jobs.register_job
PROBES: Registry = Registry("probe", "fer_analysis.probes")
