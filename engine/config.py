"""Hyper-parameter overrides given as ``key=value`` on the command line."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


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


def coerce(key: str, text: str, default: Any) -> Any:
    """Convert ``text`` to the type of ``default``; ConfigError if it does not fit."""
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
            known = ", ".join(sorted(config)) or "none"
            raise ConfigError(f"unknown config key {key!r} (known: {known})")
        else:
            config[key] = parse_literal(text)
    return config
