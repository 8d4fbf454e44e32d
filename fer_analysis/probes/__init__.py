"""Registry entries (``PROBES``): one module per probe, imported on first lookup.

What the probes share (``_base``) and the comparison of two runs' silhouette curves
(``_compare``, not a probe) are re-exported here.
"""

from fer_analysis.probes._base import ProbeResult, metric_key, pca_project, read_csv, write_csv
from fer_analysis.probes._compare import compare_silhouettes

__all__ = ["ProbeResult", "compare_silhouettes", "metric_key", "pca_project", "read_csv", "write_csv"]
