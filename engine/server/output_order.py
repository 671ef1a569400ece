"""The order in which a run's stdout and stderr were written, so a log reads as it happened.

A run's two streams go to two files (the worker writes them directly, or the shim
pumps a wrapped command's pipes), and neither says when each byte came. The daemon
looks at both sizes at every tick of a live run, and whenever output switches from
one stream to the other it appends ``STREAM OFFSET`` (where the new stretch begins
in that stream's file) to ``output.order``. A run that writes only stdout costs one
line; the order is right to one tick (a fifth of a second or so), and within one
tick stdout is taken to come first.

``merged_tail`` reads the last stretches back in that order for ``read_log`` with
``stream="both"``, which the TUI's log pane and ``traintop logs`` show.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.rundir.paths import RunDir, private_opener

STREAMS = ("stdout", "stderr")
ABSENT_RECHECK_S = 1.0


def _size(path: str | Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _path(rundir: RunDir, stream: str) -> Path:
    return rundir.stdout if stream == "stdout" else rundir.stderr


@dataclass
class OutputOrder:
    """What the daemon remembers of one live run's streams between ticks."""

    rundir: RunDir
    sizes: dict[str, int] = field(default_factory=dict)
    last: str | None = None  # the stream of the stretch being written
    # Both files' paths as strings: looked at for every live run at every tick.
    files: dict[str, str] = field(default_factory=dict)
    absent_until: float = 0.0  # neither file exists: not looked for again until then

    def __post_init__(self) -> None:
        self.files = {s: str(_path(self.rundir, s)) for s in STREAMS}
        # A restarted daemon goes on from the files as they are and the order's last line.
        self.sizes = {s: _size(self.files[s]) for s in STREAMS}
        stretches = read_order(self.rundir)
        self.last = stretches[-1][0] if stretches else None

    def note(self) -> None:
        """Look at both streams once; record a switch from one to the other.

        A run whose streams are not files (an attached script writes to its own
        terminal) is looked at again only after ABSENT_RECHECK_S.
        """
        now = time.monotonic()
        if now < self.absent_until:
            return
        found = False
        for stream in STREAMS:
            try:
                size = os.stat(self.files[stream]).st_size
            except OSError:
                continue
            found = True
            if size <= self.sizes[stream]:
                continue
            if stream != self.last:
                line = f"{stream} {self.sizes[stream]}\n"
                # On a full disk the order is lost, not the output: it is only a nicety.
                with contextlib.suppress(OSError), open(
                    self.rundir.output_order, "a", encoding="ascii", opener=private_opener
                ) as order:
                    order.write(line)
                self.last = stream
            self.sizes[stream] = size
        if not found:
            self.absent_until = now + ABSENT_RECHECK_S


def read_order(rundir: RunDir) -> list[tuple[str, int]]:
    """The stretches recorded: (stream, where it begins in that stream's file), in order."""
    try:
        text = rundir.output_order.read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    stretches: list[tuple[str, int]] = []
    for line in text.splitlines():
        stream, _, offset = line.partition(" ")
        if stream in STREAMS and offset.isdigit():
            stretches.append((stream, int(offset)))
    return stretches


def merged_tail(rundir: RunDir, limit: int) -> list[tuple[str, str]]:
    """About the last ``limit`` bytes of output as (stream, text) stretches in the order
    they were written. Output the order does not cover (a run older than it) comes
    first, stdout before stderr, as before."""
    sizes = {s: _size(_path(rundir, s)) for s in STREAMS}
    starts = read_order(rundir)
    covered = {s: min((o for t, o in starts if t == s), default=sizes[s]) for s in STREAMS}
    spans = [(s, 0, covered[s]) for s in STREAMS if covered[s] > 0]
    for i, (stream, begin) in enumerate(starts):
        end = next((o for t, o in starts[i + 1 :] if t == stream), sizes[stream])
        if end > begin:
            spans.append((stream, begin, end))
    kept: list[tuple[str, int, int]] = []
    for stream, begin, end in reversed(spans):
        if limit <= 0:
            break
        begin = max(begin, end - limit)
        limit -= end - begin
        kept.append((stream, begin, end))
    return [(s, _read(_path(rundir, s), b, e)) for s, b, e in reversed(kept)]


def _read(path: Path, begin: int, end: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(begin, os.SEEK_SET)
            return f.read(end - begin).decode("utf-8", "replace")
    except OSError:
        return ""
