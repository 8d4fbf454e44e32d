"""Errors that name a user mistake in one sentence (see docs/architecture.md, Conventions)."""


class FerOrchError(Exception):
    """Base class: the message alone tells the user what is wrong and how to fix it."""


class DatasetError(FerOrchError):
    """A dataset is missing, or not in the layout its reader expects."""


class ConfigError(FerOrchError):
    """A configuration value is invalid or names something that does not exist."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class MissingWeightsError(FerOrchError):
    """Pretrained weights were requested but are not on this machine."""


class PathError(FerOrchError):
    """A folder or file fer-orch must write (or read) is not usable; the message names it and the fix."""


class StateDictError(FerOrchError):
    """A weights or checkpoint file is not a valid state dict (corrupt, truncated, not torch)."""


class DivergedError(FerOrchError):
    """The training loss became NaN or infinite (a learning rate or loss weight too large)."""
