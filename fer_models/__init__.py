"""Everything a single FER training run needs, usable from a notebook without Ray or MLflow."""

__version__ = "0.1.0"
