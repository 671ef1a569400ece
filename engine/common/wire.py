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


@dataclasses.dataclass(frozen=True)
class _Field:
    """How one field of a dataclass is read: its name, whether it must be there, the
    types its value may have (None: any, the class converts it) and whether null is one."""

    name: str
    required: bool
    kinds: tuple[type, ...] | None
    optional: bool

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional or self.kinds is None
        if self.kinds is None:
            return True
        if isinstance(value, bool) and bool not in self.kinds:
            return False  # JSON true is no step count
        return isinstance(value, self.kinds)


_PLANS: dict[type[Any], tuple[_Field, ...]] = {}


def _fields_of(cls: type[Any]) -> tuple[_Field, ...]:
    """``cls``'s fields as read from the wire, worked out once a class (a listing of 500
    runs reads 40 fields of each: ~85 us a run when each annotation was parsed anew)."""
    if cls in _PLANS:
        return _PLANS[cls]
    plan = []
    for field in dataclasses.fields(cls):
        annotation = str(field.type)
        required = (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING)
        plan.append(_Field(field.name, required,
                           _SIMPLE.get(annotation.removesuffix(" | None")),
                           annotation.endswith(" | None")))
    _PLANS[cls] = tuple(plan)
    return _PLANS[cls]


def wire_fields(cls: type[Any], data: Any, what: str) -> dict[str, Any]:
    """The entries of ``data`` that are fields of dataclass ``cls``, checked.

    ``what`` names the object in the error ("run", "GPU sample").
    """
    if not isinstance(data, Mapping):
        raise MalformedMessage(f"malformed {what} from the engine: not an object")
    found: dict[str, Any] = {}
    for field in _fields_of(cls):
        if field.name not in data:
            if field.required:
                raise MalformedMessage(f"malformed {what} from the engine: no {field.name!r}")
            continue
        value = data[field.name]
        if not field.accepts(value):
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
