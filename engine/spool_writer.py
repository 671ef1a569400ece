"""The worker's side of ``spool.jsonl``: one JSON record per line, appended whole.

Record formats (``gen`` is the launch generation, ``time`` unix seconds)::

    {"t":"metrics","gen":G,"points":[[step,"key",value,unix_time],...]}
    {"t":"state","gen":G,"state":"running","step":s,"total":n,"time":T}
    {"t":"state","gen":G,"state":"paused"|"resumed","step":s,"time":T}
    {"t":"state","gen":G,"state":"released"|"finished","step":s,"checkpoint":p,"time":T}
    {"t":"checkpoint","gen":G,"request":R,"step":s,"path":p,"time":T}
    {"t":"error","gen":G,"message":"ExcType: message","time":T}
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (step, unix time of the step boundary, {key: value}) as buffered by Run.log.
LoggedCall = tuple[int, float, dict[str, Any]]


class SpoolWriter:
    """Appends records to a spool file; each line goes out in a single write()."""

    def __init__(self, path: Path, generation: int) -> None:
        # O_APPEND: every write lands at the end even if another generation's
        # worker (a stray one) still holds the file open.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.generation = generation

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one ``\\n``-terminated JSON line."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:  # a regular file takes it all at once; loop only for safety
            view = view[os.write(self._fd, view) :]

    def state(self, state: str, step: int, **extra: Any) -> None:
        """Append a state-change record (``extra``: ``total`` or ``checkpoint``)."""
        self.write(
            {"t": "state", "gen": self.generation, "state": state, "step": step, **extra,
             "time": time.time()}
        )

    def checkpoint(self, request: Any, step: int, path: str) -> None:
        """Append the answer to a ``checkpoint`` control command."""
        self.write(
            {"t": "checkpoint", "gen": self.generation, "request": request, "step": step,
             "path": path, "time": time.time()}
        )

    def error(self, message: str) -> None:
        """Append the one-line reason a run failed."""
        self.write({"t": "error", "gen": self.generation, "message": message,
                    "time": time.time()})

    def metrics(self, calls: Sequence[LoggedCall]) -> None:
        """Append one metrics record for a batch of buffered ``log`` calls."""
        # The thousands of small lists built here would trigger the cyclic GC
        # over and over, and each pass walks every buffered tensor: measured 5x
        # slower. Nothing here makes cycles, so pause the collector meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            points = expand_points(calls)
            if points:
                self.write({"t": "metrics", "gen": self.generation, "points": points})
        finally:
            if gc_was_enabled:
                gc.enable()


def expand_points(calls: Sequence[LoggedCall]) -> list[list[Any]]:
    """Turn buffered log calls into ``[step, key, value, time]`` points.

    Tensors are converted here, all at once per device, so logging a GPU tensor
    costs one synchronisation per flush instead of one per step.
    """
    points: list[list[Any]] = []
    tensors: list[tuple[int, Any]] = []  # (index into points, tensor)
    for step, stamp, metrics in calls:
        for key, value in metrics.items():
            if value.__class__ is float:
                points.append([step, key, value, stamp])
            elif hasattr(value, "detach"):
                tensors.append((len(points), value))
                points.append([step, key, None, stamp])
            else:
                try:
                    points.append([step, key, float(value), stamp])
                except (TypeError, ValueError):
                    print(f"traintop: dropped metric {key!r}: {type(value).__name__} is not "
                          "a number", file=sys.stderr)
    if tensors:
        _fill_tensor_values(points, tensors)
    return points


def _fill_tensor_values(points: list[list[Any]], tensors: list[tuple[int, Any]]) -> None:
    import torch  # already imported: the values are torch tensors

    with torch.no_grad():
        # Fast path, the usual case (scalars of one device): one stack, one copy
        # to the host, so a flush of thousands of GPU scalars syncs once. Reading
        # .device or .dtype per tensor would cost more than the stack itself.
        try:
            stacked = torch.stack([t for _, t in tensors])
            values = stacked.to(torch.float64).tolist() if stacked.ndim == 1 else None
        except (RuntimeError, TypeError):
            values = None
        if values is None:
            values = _values_by_group([t for _, t in tensors])
    for (index, _), value in zip(tensors, values, strict=True):
        points[index][2] = value


def _values_by_group(tensors: list[Any]) -> list[float]:
    """Slow path: mixed devices, dtypes or shapes; one stack per (device, dtype)."""
    import torch

    groups: dict[tuple[torch.device, torch.dtype], list[tuple[int, torch.Tensor]]] = {}
    for position, tensor in enumerate(tensors):
        scalar = tensor.detach()
        if scalar.ndim:
            # A non-scalar tensor is logged as its mean rather than rejected.
            scalar = scalar.reshape(()) if scalar.numel() == 1 else scalar.float().mean()
        groups.setdefault((scalar.device, scalar.dtype), []).append((position, scalar))
    values = [0.0] * len(tensors)
    for group in groups.values():
        stacked = torch.stack([s for _, s in group]).to(torch.float64).tolist()
        for (position, _), value in zip(group, stacked, strict=True):
            values[position] = value
    return values
