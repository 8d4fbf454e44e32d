"""Explanation jobs, one module per job (a ``JOBS`` registry entry); see ``_base`` for the contract."""

from fer_analysis.jobs._base import SPLITS, ExplainSpec, canonical_job, job_names, register_job, run_job

__all__ = ["ExplainSpec", "canonical_job", "job_names", "register_job", "run_job"]
