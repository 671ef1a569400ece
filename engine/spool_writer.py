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
        points = expand_points(calls)
        if points:
            self.write({"t": "metrics", "gen": self.generation, "points": points})


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

    by_device: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    for index, tensor in tensors:
        by_device.setdefault(tensor.device, []).append((index, tensor))
    for group in by_device.values():
        # A non-scalar tensor is logged as its mean rather than rejected.
        scalars = [
            t.detach().reshape(()) if t.numel() == 1 else t.detach().float().mean()
            for _, t in group
        ]
        values = torch.stack([s.to(torch.float64) for s in scalars]).tolist()
        for (index, _), value in zip(group, values, strict=True):
            points[index][2] = value
