"""The config schema: the type annotations and field metadata of the config dataclasses
(``DataConfig``, ``TrainConfig`` here, ``GridConfig`` in the orchestrator), read by one
validator.

Everything that needs to know a field reads it from the dataclass: YAML validation
(:func:`check`: a wrong type or an unknown key, at any depth, is one sentence naming its
path, e.g. ``base.lam: expected a number, got 'x'``), the numeric bounds that
``fer_models.config.validate`` enforces and the CLI shows (:func:`num`, :func:`bounded`),
the flattened MLflow params (``fer_models.config.flatten``) and the config hash (which
hashes the dataclass's dict).

Why dataclasses with this validator rather than pydantic models: the configs are frozen
dataclasses that three packages build, ``dataclasses.replace`` and hash through
``dataclasses.asdict``; as pydantic models their dict form (and so every existing trial's
hash) and every construction site would change. What the YAML needs on top of the
dataclass is small and specific: partial mappings merged over defaults (a
``method_overrides`` entry is a partial ``TrainConfig``), YAML lists for tuples, a few
legacy forms (``augment: true``, ``layers: "5+4"``) and our own one-sentence errors; a
walk over ``typing.get_type_hints`` does that in one function.

Field metadata keys: ``bounds`` (``low``, ``high``, ``strict``: the value's range),
``cli`` (the option(s) that set the field, named in messages), ``also`` (further types a
YAML file may give, normalised by the dataclass), ``entries`` (a mapping whose values are
partial configs of that class), ``hash`` (:func:`hashed`: ``"omit"`` for a field that
changes where or how fast a run goes, not what it learns; ``"omit-default"`` for a field
added after trials were first hashed, left out while it holds its default so that a
finished trial of an older grid keeps its hash).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fer_models.errors import ConfigError


class ConfigSchemaError(ConfigError):
    """A config value of the wrong type, or a key no config field has; the message names its path."""


def num(default: Any, low: float | None = 0.0, *, high: float | None = None, strict: bool = False,
        cli: str | None = None, **meta: Any) -> Any:
    """A numeric field with its range: ``>= low`` (``> low`` when ``strict``), ``<= high``."""
    return dataclasses.field(default=default, metadata={"bounds": {"low": low, "high": high, "strict": strict},
                                                        "cli": cli, **meta})


def meta(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A field with schema metadata (``cli``, ``also``, ``entries``) and no range."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    """Each field's type, resolved (the modules use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def bounded(cls: type) -> list[tuple[str, dict[str, Any], bool, str | None]]:
    """``(name, bounds, integer, cli)`` of each field of ``cls`` with a range, in field order."""
    out = []
    for name, f in fields(cls).items():
        if "bounds" in f.metadata:
            integer = int in _arms(hints(cls)[name])
            out.append((name, f.metadata["bounds"], integer, f.metadata.get("cli")))
    return out


def label(path: str, cli: str | None) -> str:
    """How a message names a field: its path, and the option that sets it."""
    return f"{path} ({cli})" if cli else path


def _arms(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else ("null" if value is None else str(value).lower()
                                                      if isinstance(value, bool) else str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def describe(tp: Any) -> str:
    """A type as a sentence's words: ``an integer``, ``a list of numbers``, ``null``, ..."""
    arms = _arms(tp)
    if len(arms) > 1:
        return " or ".join(describe(a) for a in arms)
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = describe(typing.get_args(tp)[0])
        return "a list of " + {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(item, item)
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null", typing.Any: "anything"}.get(tp, str(tp))


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` has type ``tp`` as YAML gives it (lists for tuples; an int is a number)."""
    if tp is typing.Any:
        return True
    if len(_arms(tp)) > 1:
        return any(_accepts(a, value) for a in _arms(tp))
    origin = typing.get_origin(tp)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_accepts(typing.get_args(tp)[0], v) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def check(cls: type, data: Any, path: str = "") -> None:
    """Raise :class:`ConfigSchemaError` at the first key of ``data`` (a possibly partial
    mapping of ``cls`` fields, nested mappings included) that ``cls`` has no field for, or
    whose value has the wrong type; the message is one sentence naming the key's path."""
    where = path.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        raise ConfigSchemaError(f"{where}: expected a mapping of {cls.__name__} fields, got {_show(data)}")
    known = fields(cls)
    for key, value in data.items():
        at = f"{path}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; the fields are {', '.join(known)}"
            raise ConfigSchemaError(f"{at}: unknown {cls.__name__} field{hint}")
        _check_value(hints(cls)[key], known[key].metadata, value, at)


def _check_value(tp: Any, metadata: Mapping[str, Any], value: Any, at: str) -> None:
    also, entries = metadata.get("also", ()), metadata.get("entries")
    if not (_accepts(tp, value) or any(_accepts(a, value) for a in also)):
        words = " or ".join([describe(tp), *(describe(a) for a in also)])
        if entries is not None:
            words = f"a mapping of names to {entries.__name__} fields"
        raise ConfigSchemaError(f"{at}: expected {words}, got {_show(value)}")
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        return
    if entries is not None:  # a mapping of name -> partial config of ``entries``
        for name, part in value.items():
            check(entries, part, f"{at}.{name}.")
        return
    if dataclasses.is_dataclass(tp):
        check(tp, value, f"{at}.")
        return
    if origin is dict and isinstance(value, Mapping):
        item = typing.get_args(tp)[1]
        for k, v in value.items():
            if not _accepts(item, v):
                raise ConfigSchemaError(f"{at}.{k}: expected {describe(item)}, got {_show(v)}")


def _plain(value: Any) -> Any:
    """A default as ``fer_models.config.to_dict`` writes it (tuples as lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def hashed(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """What the config hash covers of ``d`` (a ``to_dict`` of ``cls``): every field but those
    marked ``hash="omit"``, and those marked ``"omit-default"`` only away from their default;
    nested configs likewise."""
    out: dict[str, Any] = {}
    for name, f in fields(cls).items():
        if name not in d or f.metadata.get("hash") == "omit":
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.metadata.get("hash") == "omit-default" and d[name] == _plain(default):
            continue
        tp = hints(cls)[name]
        out[name] = hashed(tp, d[name]) if dataclasses.is_dataclass(tp) and isinstance(d[name], dict) else d[name]
    return out


def wrong_value(tp: Any, also: tuple = ()) -> Any:
    """A value that ``tp`` (nor any type of ``also``) accepts: for the tests that feed every
    field a wrong type."""
    for candidate in ("not-a-value", 3.5, ["x", 1], {"x": 1}):
        if not any(_accepts(t, candidate) for t in (tp, *also)):
            return candidate
    raise ValueError(f"every candidate value fits {tp}")
