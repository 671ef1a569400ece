"""Hyper-parameter overrides given as ``key=value`` on the command line."""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
# What SQLite (and torch's int64) can hold: a step count beyond it cannot even be stored.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Words that ask for an infinite float on purpose (``clip=inf``), unlike ``1e400``.
_INFINITY_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


class ConfigError(ValueError):
    """An override that cannot be applied; the message is one line for the user."""


def parse_literal(text: str) -> Any:
    """A value with no declared type: number, bool, None, list... or else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def step_total(value: Any) -> int | None:
    """A run's total step count as the store keeps it: an int SQLite can hold, else None.

    A worker may call ``run.steps(10**20)``; that run trains, its total is just unknown.
    """
    if isinstance(value, int) and not isinstance(value, bool) and _fits_int64(value):
        return value
    return None


def _fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def _check_range(key: str, text: str, value: Any) -> Any:
    """``value`` itself, or ConfigError if a number in it overflowed.

    An integer must fit in 64 bits; a float may be infinite only where the text
    says so (``inf``), not where a number was too large (``1e400``).
    """
    if isinstance(value, list | tuple | set):
        for item in value:
            _check_range(key, text, item)
    elif isinstance(value, dict):
        for item in (*value.keys(), *value.values()):
            _check_range(key, text, item)
    elif isinstance(value, int) and not isinstance(value, bool) and not _fits_int64(value):
        raise ConfigError(f"{key}={text}: out of range for a 64-bit integer")
    elif (
        isinstance(value, float)
        and math.isinf(value)
        and text.strip().lower() not in _INFINITY_WORDS
    ):
        raise ConfigError(f"{key}={text}: out of range for a number")
    return value


def coerce(key: str, text: str, default: Any) -> Any:
    """Convert ``text`` to the type of ``default``; ConfigError if it does not fit."""
    return _check_range(key, text, _coerce(key, text, default))


def _coerce(key: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{key}={text}: expected true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = float("nan")
            if as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{key}={text}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text}: expected a number") from None
    if isinstance(default, str):
        return text
    value = parse_literal(text)
    if default is not None and type(value) is not type(default):
        raise ConfigError(f"{key}={text}: expected a {type(default).__name__}")
    return value


def apply_overrides(
    base: Mapping[str, Any], overrides: Iterable[str], strict: bool
) -> dict[str, Any]:
    """``base`` with each ``key=value`` applied.

    With ``strict`` (the workload declares its config), a key must already
    exist and the value is converted to the type of the current value;
    otherwise unknown keys are accepted with a literal value.
    """
    config = dict(base)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{item!r}: overrides are written key=value")
        if key in config:
            config[key] = coerce(key, text, config[key])
        elif strict:
            near = difflib.get_close_matches(key, list(config), n=1)
            known = f"did you mean {near[0]!r}? " if near else ""
            known += f"known: {', '.join(sorted(config)) or 'none'}"
            raise ConfigError(f"unknown config key {key!r} ({known})")
        else:
            config[key] = _check_range(key, text, parse_literal(text))
    return config
