"""The worker's side of ``spool.jsonl``: one JSON record per line, appended whole.

Record formats (``gen`` is the launch generation, ``time`` unix seconds)::

    {"t":"metrics","gen":G,"points":[[step,"key",value,unix_time],...]}
    {"t":"state","gen":G,"state":"running","step":s,"total":n,"time":T}
    {"t":"state","gen":G,"state":"running","step":0,"rewind":false,"time":T}
    {"t":"rewind","gen":G,"step":s,"time":T}
    {"t":"state","gen":G,"state":"paused"|"resumed","step":s,"time":T}
    {"t":"state","gen":G,"state":"released"|"finished","step":s,"checkpoint":p,"time":T}
    {"t":"checkpoint","gen":G,"request":R,"step":s,"path":p,"time":T}
    {"t":"error","gen":G,"message":"ExcType: message","time":T}
    {"t":"spool","gen":G,"held":n,"dropped":d,"since":T0,"while":W,"time":T}

A ``running`` record drops the points an earlier generation logged at its step and
after (it goes on from a checkpoint there). A wrapped command's says ``rewind: false``:
it cannot know where the command goes on from, so a retried one writes a ``rewind``
record with the step of its first points instead.

The ``spool`` record follows a time when the disk refused the spool (full, or
read-only, an immutable file, an I/O error: any OSError): the worker went on
training, held its records in memory (at most HOLD_LIMIT_BYTES; past it every
other held metrics batch is dropped, so what is kept still spans the whole
outage), wrote them when the disk took them again, and then says how many points
were held and how many dropped, and ``while`` what (``refused_while``). The
start of an outage other than a full disk is also said on stderr: an attached
script's user sees it in their terminal.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.rundir.disk_space import (
    RETRY_INTERVAL_S,
    out_of_space,
    refuse_if_fake_full,
    refused_while,
)

# (step, unix time of the step boundary, {key: value}) as buffered by Run.log.
LoggedCall = tuple[int, float, dict[str, Any]]
# The most a worker holds in memory while its disk is full: ~130k points of one
# metric, minutes of a fast loop, and nothing next to a model's own memory.
HOLD_LIMIT_BYTES = 4 * 1024 * 1024


class SpoolWriter:
    """Appends records to a spool file, each line whole, holding them while the disk is full."""

    def __init__(self, path: Path, generation: int) -> None:
        # O_APPEND: every write lands at the end even if another generation's
        # worker (a stray one) still holds the file open.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.generation = generation
        # Lines the disk refused, oldest first, with the points each holds. The
        # first may be the unwritten rest of a line whose start is on disk already.
        self._held: deque[tuple[bytes, int]] = deque()
        self._held_bytes = 0
        self._partial_head = False
        self._full_since: float | None = None
        self._refused_while = ""  # why the disk refused the spool (see refused_while)
        self._late_points = 0
        self._dropped_points = 0
        # Past the bound, only every ``_stride``-th metrics batch is kept (see _thin).
        self._stride = 1
        self._batches = 0  # metrics batches met during this outage

    @property
    def held_bytes(self) -> int:
        """Bytes waiting for room on the disk (0 when the spool is up to date)."""
        return self._held_bytes

    def write(self, record: dict[str, Any], points: int = 0) -> bool:
        """Append one record as one ``\\n``-terminated JSON line.

        Never raises for a full disk: the line is held and written, after the
        ones held before it, once there is room. Returns whether nothing is held.
        """
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if self._held and not self._drain() and points:  # the disk is still full
            self._batches += 1
            if self._batches % self._stride:
                self._dropped_points += points
                return False
        self._held.append((line, points))
        self._held_bytes += len(line)
        if self._held_bytes > HOLD_LIMIT_BYTES:
            self._thin()
        return self._drain()

    def wait_until_written(self) -> None:
        """Block until every held line is on disk (a run that ends waits for room)."""
        while not self._drain():
            time.sleep(RETRY_INTERVAL_S)

    def _drain(self) -> bool:
        while self._held:
            data, points = self._held[0]
            try:
                refuse_if_fake_full()
                written = os.write(self._fd, data)
            except OSError as exc:  # whatever the disk's reason: training goes on
                if self._full_since is None:
                    self._full_since = time.time()
                    self._refused_while = refused_while(exc)
                    if not out_of_space(exc):
                        _say(f"traintop: cannot write this run's spool ({exc.strerror}); "
                             "training goes on, its points held in memory until it can")
                return False
            self._held_bytes -= written
            if written < len(data):  # a short write: the disk filled up within the line
                self._held[0] = (data[written:], points)
                self._partial_head = True
                continue
            self._held.popleft()
            self._partial_head = False
            if self._full_since is not None:
                self._late_points += points
        if self._full_since is not None:
            self._say_disk_was_full()
        return True

    def _say_disk_was_full(self) -> None:
        since, self._full_since = self._full_since, None
        late, dropped = self._late_points, self._dropped_points
        self._late_points = self._dropped_points = self._batches = 0
        self._stride = 1
        if late or dropped:
            self.write({"t": "spool", "gen": self.generation, "held": late,
                        "dropped": dropped, "since": since, "while": self._refused_while,
                        "time": time.time()})

    def _thin(self) -> None:
        """Drop every other held metrics batch (counting their points); keep half as many after.

        Thinning rather than dropping the oldest keeps an even, coarser curve of
        the whole outage. State and checkpoint records are never dropped: they
        are few and small, and the run's life depends on them.
        """
        kept: deque[tuple[bytes, int]] = deque()
        odd = False
        for index, (data, points) in enumerate(self._held):
            if points and not (index == 0 and self._partial_head):
                odd = not odd
                if not odd:
                    self._dropped_points += points
                    self._held_bytes -= len(data)
                    continue
            kept.append((data, points))
        self._held = kept
        self._stride *= 2

    def state(self, state: str, step: int, **extra: Any) -> None:
        """Append a state-change record (``extra``: ``total`` or ``checkpoint``)."""
        self.write(
            {"t": "state", "gen": self.generation, "state": state, "step": step, **extra,
             "time": time.time()}
        )

    def rewind(self, step: int) -> None:
        """Append a ``rewind`` record: this generation's points start at ``step``."""
        self.write({"t": "rewind", "gen": self.generation, "step": step, "time": time.time()})

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
        self.write_batch(MetricsBatch(calls))

    def write_batch(self, batch: MetricsBatch) -> None:
        """Append the metrics record of ``batch``, waiting for its GPU values if need be."""
        points = batch.points()
        if points:
            self.write({"t": "metrics", "gen": self.generation, "points": points}, len(points))


class MetricsBatch:
    """Buffered ``log`` calls as points, their GPU values copied to the host in the background.

    Made at a flush: one stack of the batch's GPU scalars and one non-blocking copy
    into pinned memory, marked by a CUDA event. The training thread never waits
    for the GPU here; ``points()`` waits only if the copy is not done yet, and
    the run asks for it a flush later (``ready``), when it is.
    """

    def __init__(self, calls: Sequence[LoggedCall]) -> None:
        # The thousands of small lists built here would trigger the cyclic GC
        # over and over, and each pass walks every buffered tensor: measured 5x
        # slower. Nothing here makes cycles, so pause the collector meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._points, self._tensors = expand_points(calls)
        finally:
            if gc_was_enabled:
                gc.enable()
        self._copy: tuple[Any, Any] | None = None  # (pinned host tensor, CUDA event)
        if self._tensors:
            self._copy = _start_copy([t for _, t in self._tensors])
            if self._copy is None:  # CPU tensors, mixed devices: read now (no GPU to wait for)
                self._fill(_values(self._tensors))

    def ready(self) -> bool:
        """Whether ``points()`` would not wait for the GPU."""
        return self._copy is None or bool(self._copy[1].query())

    def points(self) -> list[list[Any]]:
        """The ``[step, key, value, time]`` points, every value read."""
        if self._copy is not None:
            host, event = self._copy
            event.synchronize()
            self._copy = None
            self._fill(host.tolist())
        return self._points

    def _fill(self, values: list[float]) -> None:
        for (index, _), value in zip(self._tensors, values, strict=True):
            self._points[index][2] = value
        self._tensors = []


def _say(line: str) -> None:
    """A line on stderr, if stderr takes it (it may be a file on the refusing disk)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def expand_points(calls: Sequence[LoggedCall]) -> tuple[list[list[Any]], list[tuple[int, Any]]]:
    """Turn buffered log calls into ``[step, key, value, time]`` points.

    A tensor's value is left None and listed with its point's index, so that all
    of them are read at once per device: one GPU synchronisation per flush at
    most, instead of one per step.
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
    return points, tensors


def _start_copy(tensors: list[Any]) -> tuple[Any, Any] | None:
    """GPU scalars of one device: stack them and start their copy to pinned host memory.

    None for anything else (CPU tensors, mixed devices or shapes), read at once.
    Reading .device per tensor would cost more than the stack itself: the stack
    says whether they share one.
    """
    import torch  # already imported: the values are torch tensors

    with torch.no_grad():
        try:
            stacked = torch.stack(tensors)
        except (RuntimeError, TypeError):
            return None
        if stacked.ndim != 1 or not stacked.is_cuda:
            return None
        host = torch.empty(stacked.shape, dtype=torch.float64, pin_memory=True)
        host.copy_(stacked.to(torch.float64), non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        return host, event


def _values(tensors: list[tuple[int, Any]]) -> list[float]:
    """The values of CPU (or mixed) tensors, read now."""
    import torch

    with torch.no_grad():
        try:
            stacked = torch.stack([t for _, t in tensors])
            if stacked.ndim == 1:
                values: list[float] = stacked.to(torch.float64).tolist()
                return values
        except (RuntimeError, TypeError):
            pass
        return _values_by_group([t for _, t in tensors])


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
