"""Where a queued run fits: how much of which GPUs it may take now, or why none.

Pure functions over what the scheduler sees (GPU memory from the latest
telemetry sample, the runs already placed), so every rule is tested without a
GPU. A run asks for ``gpus``: 0 (CPU only), a share below 1 (packed beside
other small runs), or a whole number of GPUs. Memory is the other bound: a run
is never put on a GPU whose free memory is below its expected peak, and the
memory that runs placed earlier have yet to allocate counts as taken.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from engine.common.format import format_bytes

# Two shares that add up to 1 give or take float error still fit one GPU.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GpuRoom:
    """One GPU as placement sees it: its memory, and the share runs hold of it."""

    index: int
    memory_total: int | None
    memory_used: int | None
    # Memory that runs placed here expect to take but do not hold yet (their peak
    # less what they hold now), counted as used so two runs are not put on one
    # GPU in the seconds before the first has allocated.
    reserved: int = 0
    share: float = 0.0  # the GPU shares of the runs on it (a whole run is 1)

    @property
    def free(self) -> int | None:
        """Bytes free for a new run, or None where memory is not known."""
        if self.memory_total is None or self.memory_used is None:
            return None
        return max(0, self.memory_total - self.memory_used - self.reserved)


@dataclass(frozen=True)
class Placement:
    """The GPUs a run gets (empty: none needed), or ``why`` it cannot start now."""

    gpus: tuple[int, ...] = ()
    why: str | None = None


def place(
    ask: float,
    peak: int | None,
    rooms: list[GpuRoom],
    allowed: Collection[int] | None = None,
) -> Placement:
    """Choose GPUs for a run that asks ``ask`` of them and expects ``peak`` bytes at most.

    ``allowed`` limits the choice (the run named a device); with an ``ask`` of 0 it
    names the GPU the run rides on, and only its memory is checked. A share goes to the
    fullest GPU it fits on, keeping the others whole for whole-GPU runs; a whole
    GPU goes to the one with the most free memory. A peak of a run on several
    GPUs is split evenly between them.
    """
    if ask <= 0:
        if allowed is None or peak is None:
            return Placement()
        # It rides on a GPU without taking a share of it (a fork beside its parent):
        # only memory decides.
        short = [r.index for r in rooms
                 if r.index in allowed and r.free is not None and r.free < peak]
        if short:
            return Placement(why=f"waiting for GPU memory on cuda:{short[0]}: needs "
                             f"{format_bytes(peak)} (its expected peak)")
        return Placement()
    candidates = [r for r in rooms if allowed is None or r.index in allowed]
    if not candidates:
        named = "" if allowed is None else f" {', '.join(f'cuda:{i}' for i in sorted(allowed))}"
        return Placement(why=f"no GPU{named} on this machine")
    count = 1 if ask < 1 else math.ceil(ask)
    need = None if peak is None else peak // count
    share = ask if ask < 1 else 1.0
    fitting = [r for r in candidates if r.share + share <= 1 + _EPSILON]
    if len(fitting) < count:
        busy = "no GPU share" if ask < 1 else f"{count} free GPU{'s' if count > 1 else ''}"
        return Placement(why=f"waiting for {busy} (others' runs hold them)")
    if need is not None:
        roomy = [r for r in fitting if r.free is None or r.free >= need]
        if len(roomy) < count:
            # Not how much is free: that changes every second, and each change of a
            # reason is an event to every client (hundreds of queued runs, over SSH).
            return Placement(
                why=f"waiting for GPU memory: needs {format_bytes(need)} (its expected peak)"
            )
        fitting = roomy
    if ask < 1:
        fitting.sort(key=lambda r: (-r.share, r.index))
    else:
        fitting.sort(key=lambda r: (-(r.free or 0), r.index))
    return Placement(gpus=tuple(sorted(r.index for r in fitting[:count])))


def rooms_from(
    totals: Mapping[int, tuple[int | None, int | None]],
    holders: list[tuple[tuple[int, ...], float, int | None, int]],
) -> list[GpuRoom]:
    """GPU rooms from memory per GPU (total, used) and the runs that hold GPUs.

    Each holder is (its GPUs, its ask, its expected peak, the bytes it holds now).
    """
    share: dict[int, float] = {i: 0.0 for i in totals}
    reserved: dict[int, int] = {i: 0 for i in totals}
    for gpus, ask, peak, holding in holders:
        for index in gpus:
            if index not in share:
                continue
            share[index] += ask if ask < 1 else 1.0
            if peak is not None:
                reserved[index] += max(0, peak // len(gpus) - holding // len(gpus))
    return [
        GpuRoom(i, total, used, reserved[i], share[i])
        for i, (total, used) in sorted(totals.items())
    ]
