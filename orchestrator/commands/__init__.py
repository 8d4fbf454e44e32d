"""Click commands, one module per area; cli.py adds the COMMANDS of every module here to
`fer-orch`, so a new command is a new module.

Modules import ray, mlflow and torch inside the command functions, so `fer-orch --help`
stays fast.
"""

from __future__ import annotations

from typing import Callable, Iterable

import click


class RegistryChoice(click.Choice):
    """A ``click.Choice`` over registry names, read each time the option is used or shown,
    so an entry registered in a new module is accepted with no change to the command."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self._names = names
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns it; the names are live
        pass
