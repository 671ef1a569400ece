"""How often a run checkpoints on its own: every N steps, or every so many minutes.

A run that checkpoints as it goes can be taken up again after a crash, a SIGKILL
or a reboot from at most one interval back (by hand with ``traintop resume``, or by
the engine itself when the run has ``--retries`` left). ``--checkpoint-every 500``
counts steps; ``30s``, ``10m``, ``2h`` count time the run spends training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SPEC = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
# Below this a run would spend more time writing checkpoints than training.
MIN_SECONDS = 10.0


@dataclass(frozen=True)
class CheckpointEvery:
    """Every ``steps`` steps, or every ``seconds`` of wall time (exactly one is set)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> CheckpointEvery:
        """``500`` (steps) or ``90s``, ``10m``, ``2h``; ValueError says what is wrong."""
        match = _SPEC.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError(f"checkpoint interval {text!r} is not a number of steps (500) "
                             "or a time (90s, 10m, 2h)")
        number, unit = match.groups()
        if not unit:
            if "." in number or int(number) < 1:
                raise ValueError(f"checkpoint interval {text!r}: steps must be a whole "
                                 "number of at least 1")
            return cls(steps=int(number))
        seconds = float(number) * _UNIT_S[unit]
        if seconds < MIN_SECONDS:
            raise ValueError(f"checkpoint interval {text!r} is under {MIN_SECONDS:.0f} s: "
                             "a run would spend its time writing checkpoints")
        return cls(seconds=seconds)

    @classmethod
    def from_wire(cls, value: Any) -> CheckpointEvery | None:
        """From ``wire()``'s dict (None, or anything malformed: no checkpoints)."""
        if not isinstance(value, dict):
            return None
        steps, seconds = value.get("steps"), value.get("seconds")
        if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
            return cls(steps=steps)
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and seconds >= MIN_SECONDS:
            return cls(seconds=float(seconds))
        return None

    def wire(self) -> dict[str, Any]:
        """As launch.json, the store and requests carry it."""
        return {"steps": self.steps} if self.steps is not None else {"seconds": self.seconds}

    def text(self) -> str:
        """As ``parse`` reads it: '500', '600s'."""
        return str(self.steps) if self.steps is not None else f"{self.seconds:g}s"

    def describe(self) -> str:
        """'every 500 steps', 'every 10m'."""
        if self.steps is not None:
            return f"every {self.steps:,} steps"
        seconds = float(self.seconds or 0)
        for unit in ("h", "m"):
            if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
                return f"every {seconds / _UNIT_S[unit]:.0f}{unit}"
        return f"every {seconds:.0f}s"

    def due(self, step: int, last_step: int, now: float, last_time: float) -> bool:
        """Whether a checkpoint is due at ``step`` (before it runs), the last one having
        been at ``last_step`` / ``last_time`` (the start of this generation if none)."""
        if step <= last_step:
            return False
        if self.steps is not None:
            return step % self.steps == 0
        return now - last_time >= float(self.seconds or 0)
