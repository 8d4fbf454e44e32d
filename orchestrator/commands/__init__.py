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


def schema_option(cls: type, name: str, *decls: str, **kw) -> Callable:
    """A click option setting field ``name`` of the config dataclass ``cls``: its type, its
    default (unless ``kw`` gives one) and the range its help shows come from the schema
    (:mod:`fer_models.schema`). The range itself is checked by :func:`fer_models.config.validate`
    (one sentence naming the field and this option, for a value from the CLI or a YAML file
    alike), not by click."""
    import dataclasses

    from fer_models.schema import fields, hints

    f, tp = fields(cls)[name], hints(cls)[name]
    arms = getattr(tp, "__args__", (tp,))
    base = next((t for t in (int, float) if t in arms or t is tp), None)
    kw.setdefault("type", {int: click.INT, float: click.FLOAT}.get(base, click.STRING))
    if "default" not in kw and f.default is not dataclasses.MISSING:
        kw["default"], kw["show_default"] = f.default, True
    bounds = f.metadata.get("bounds")
    if bounds and bounds["low"] is not None:
        span = f"{'>' if bounds['strict'] else '>='} {bounds['low']:g}"
        span += f", <= {bounds['high']:g}" if bounds["high"] is not None else ""
        kw["help"] = f"{kw.get('help', '')} [{span}]".strip()
    return click.option(*decls, **kw)
