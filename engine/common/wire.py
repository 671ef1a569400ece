"""Decoding the daemon's JSON objects into dataclasses: the shared rules of every ``from_wire``.

Unknown keys are ignored, so an older client keeps working against a newer
daemon that says more. A missing required key, or a value of the wrong type,
raises ``MalformedMessage`` naming what was wrong, at the edge where the frame
is read, rather than a KeyError deep inside whatever reads the value later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.common.protocol import ProtocolError

T = TypeVar("T")


class MalformedMessage(ProtocolError):
    """A frame that parsed as JSON but lacks a field, or holds a value of the wrong type."""


# Field annotations checked by type; anything else (lists, dicts, nested objects) is
# converted by the class's own ``from_wire``, which checks it as it goes.
_SIMPLE: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _accepts(annotation: str, value: Any) -> bool:
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None:
        return optional or base not in _SIMPLE
    kinds = _SIMPLE.get(base)
    if kinds is None:
        return True
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is no step count
    return isinstance(value, kinds)


def wire_fields(cls: type[Any], data: Any, what: str) -> dict[str, Any]:
    """The entries of ``data`` that are fields of dataclass ``cls``, checked.

    ``what`` names the object in the error ("run", "GPU sample").
    """
    if not isinstance(data, Mapping):
        raise MalformedMessage(f"malformed {what} from the engine: not an object")
    found: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if required:
                raise MalformedMessage(f"malformed {what} from the engine: no {field.name!r}")
            continue
        value = data[field.name]
        if not _accepts(str(field.type), value):
            raise MalformedMessage(
                f"malformed {what} from the engine: {field.name!r} is {type(value).__name__}"
            )
        found[field.name] = value
    return found


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Turn the errors of converting a nested value into one MalformedMessage."""
    try:
        yield
    except MalformedMessage:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise MalformedMessage(f"malformed {what} from the engine: {exc}") from None


def wire_list(data: Any, what: str) -> list[Any]:
    """``data`` as a list (JSON array), or MalformedMessage."""
    if not isinstance(data, list):
        raise MalformedMessage(f"malformed {what} from the engine: not a list")
    return data


def wire_dict(data: Any, what: str) -> dict[str, Any]:
    """``data`` as a dict (JSON object), or MalformedMessage."""
    if not isinstance(data, dict):
        raise MalformedMessage(f"malformed {what} from the engine: not an object")
    return data
