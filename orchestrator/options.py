"""The CLI's option strings read into values: comma lists, ``--folds``, ``--data-opt``,
``--seeds`` and ``--trial-resources``. A string that does not parse is one sentence
(:class:`~fer_models.errors.ConfigError`) naming the option and the form it takes."""

from __future__ import annotations

from typing import Any

import yaml

from fer_models.errors import ConfigError


def parse_list(text: str | tuple[str, ...] | list[str] | None, kind: type = str) -> tuple | None:
    """``"a,b"`` -> ``("a", "b")``; the values of a repeated option (``("a,b", "c")``) join up.

    A bare integer N for seeds means ``0..N-1`` (caller decides).
    """
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        text = ",".join(text)
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        return tuple(kind(x) for x in items)
    except ValueError:
        raise ConfigError(f"could not read '{text}' as a comma-separated list of {kind.__name__}") from None


def parse_folds(value: int | str | None) -> int | str | None:
    """``--folds``: None, a count N >= 2 (folds 0..N-1) or ``"all"`` (every fold the dataset has)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--folds takes a count (10) or 'all', got '{value}'") from None
    if n < 2:
        raise ConfigError(f"--folds needs at least 2 folds (or 'all'), got {n}")
    return n


def parse_data_opts(items: tuple[str, ...] | list[str] | None) -> dict[str, Any]:
    """``("classes=6", "fold=3")`` -> ``{"classes": 6, "fold": 3}`` (``--data-opt``, repeatable).

    Values are read as YAML scalars (``6`` an int, ``true`` a bool, ``045,090`` a string);
    whether a name and value suit the dataset is the reader's check
    (:func:`fer_models.data.readers.check_options`), which lists the valid ones.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--data-opt expects NAME=VALUE (e.g. classes=6), got '{item}'")
        parsed = yaml.safe_load(value) if value.strip() else ""
        out[key.strip()] = value.strip() if isinstance(parsed, (list, dict)) or parsed is None else parsed
    return out


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """``"3"`` -> ``(0, 1, 2)`` (paper style: N seeds); ``"0,4"`` -> ``(0, 4)``."""
    if text is None:
        return None
    text = str(text).strip()
    if "," not in text:
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"--seeds takes a count (3) or a list (0,1,2), got '{text}'") from None
        if n < 1:
            raise ConfigError(f"--seeds must be at least 1, got {n}")
        return tuple(range(n))
    return parse_list(text, int)


def parse_resources(text: str | tuple[str, ...] | list[str] | None) -> dict[str, float] | None:
    """``"worker=1,fast_disk=0.5"`` -> ``{"worker": 1.0, "fast_disk": 0.5}`` (``--trial-resources``)."""
    items = parse_list(text)
    if items is None:
        return None
    out: dict[str, float] = {}
    for item in items:
        name, sep, amount = item.partition("=")
        try:
            out[name.strip()] = float(amount) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--trial-resources takes NAME=AMOUNT[,NAME=AMOUNT], got '{item}'") from None
    return out
