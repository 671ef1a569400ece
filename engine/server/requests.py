"""A request's parameters, checked before anything is done with them.

Every check that can fail on user input raises ``RequestError`` (one line for
people, a code for programs) before anything is written, so a refused request
changes nothing stored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.common.config import INT64_MAX, INT64_MIN
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, MAX_TAGS, tag_problem


class RequestError(Exception):
    """A refused request: ``code`` for programs, ``message`` (one line) for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def param(params: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    """Parameter ``name`` checked to be a ``kind``; ``default`` if left out (none: required)."""
    value = params.get(name)
    if value is None:  # null is the same as leaving the parameter out
        if default is ...:
            raise RequestError("bad_request", f"missing parameter {name!r}")
        return default
    # bool is an int to isinstance, but true is no step count or offset.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError("bad_request", f"parameter {name!r} must be {kind.__name__}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise RequestError("bad_request", f"parameter {name!r} is out of range")
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in items) and isinstance(value, list):
        raise RequestError("bad_request", f"parameter {name!r} must be a list of strings")
    # A NUL byte cannot be part of a path, an argument or a name; refuse it up front.
    if any(isinstance(v, str) and "\0" in v for v in items):
        raise RequestError("bad_request", f"parameter {name!r} contains a NUL character")
    return value


def tags_param(params: dict[str, Any], name: str = "tags") -> list[str]:
    """Parameter ``name``: tags for a run, each checked, in order, each once (none: [])."""
    tags: list[str] = list(dict.fromkeys(param(params, name, list, [])))
    for tag in tags:
        problem = tag_problem(tag)
        if problem is not None:
            raise RequestError("bad_request", problem)
    if len(tags) > MAX_TAGS:
        raise RequestError("bad_request", f"{len(tags)} tags; the limit is {MAX_TAGS}")
    return tags


def is_number(value: Any) -> bool:
    """A finite JSON number (not true/false)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def env_param(params: dict[str, Any]) -> dict[str, str] | None:
    """The ``env`` parameter: the environment a run gets (None: the daemon's own)."""
    env = params.get("env")
    if env is not None and not (
        isinstance(env, dict)
        and all(
            isinstance(k, str) and isinstance(v, str) and "\0" not in k + v
            for k, v in env.items()
        )
    ):
        raise RequestError("bad_request", "parameter 'env' must map strings to strings")
    return env


def smoothing_param(params: dict[str, Any]) -> float | None:
    """The ``smoothing`` parameter: None, or an EMA weight in [0, 1)."""
    value = params.get("smoothing")
    if value is not None and not (is_number(value) and 0 <= value < 1):
        raise RequestError("bad_request", "smoothing must be a number in [0, 1)")
    return None if value is None else float(value)


MAX_RETRIES = 100


def fault_params(params: dict[str, Any], inherit: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """A new run's ``checkpoint_every`` (text: ``500`` steps, ``10m``) and ``retries``, as
    the store keeps them; each left out is ``inherit``'s (a fork's parent), else none."""
    text = param(params, "checkpoint_every", str, None)
    if text is None:
        every = inherit.get("checkpoint_every") if inherit else None
    elif text.strip().lower() in ("", "0", "off", "none"):
        every = None
    else:
        try:
            every = CheckpointEvery.parse(text).wire()
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from None
    retries = param(params, "retries", int, None)
    if retries is None:
        retries = int(inherit.get("retries") or 0) if inherit else 0
    elif not 0 <= retries <= MAX_RETRIES:
        raise RequestError("bad_request", f"retries must be 0 to {MAX_RETRIES}, not {retries}")
    return {"checkpoint_every": every, "retries": retries}


def divergence_param(params: dict[str, Any], inherited: float | None) -> float | None:
    """The divergence factor a new run gets (None: it is never paused for divergence).

    From ``divergence_pause`` (false: opt out) and ``divergence_factor`` (a number
    above 1); ``inherited`` (the default, or a fork's parent's) when neither is given.
    """
    pause, factor = params.get("divergence_pause"), params.get("divergence_factor")
    if pause is not None and not isinstance(pause, bool):
        raise RequestError("bad_request", "parameter 'divergence_pause' must be true or false")
    if factor is None:
        if pause is None:
            return inherited
        return (inherited or DEFAULT_DIVERGENCE_FACTOR) if pause else None
    if not is_number(factor) or factor <= 1:
        shown = repr(factor) if isinstance(factor, float) else json.dumps(factor)
        raise RequestError(
            "bad_request", f"the divergence factor must be a number above 1, not {shown[:40]}"
        )
    if pause is False:
        raise RequestError(
            "bad_request", "a divergence factor and no divergence pause contradict each other"
        )
    return float(factor)


def check_steps(config: dict[str, Any]) -> None:
    """Refuse a config whose ``steps`` is zero or negative."""
    steps = config.get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps <= 0:
        raise RequestError("bad_config", f"steps={steps}: must be positive")


def resolve_spec(spec: str, cwd: str) -> str:
    """Make the file part of ``file.py[:function]`` absolute, relative to the client's cwd."""
    path, sep, function = spec.partition(":")
    if path.endswith(".py") or sep or "/" in path:
        return str(Path(cwd, path).resolve()) + (sep + function if sep else "")
    return spec
