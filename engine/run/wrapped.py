"""The shim's side of a wrapped command (``traintop run -- CMD``).

The command runs as it would in a terminal-free shell: the user's working
directory and environment (what the CLI sent, plus ``PYTHONUNBUFFERED=1`` and,
unless set, ``OMP_WAIT_POLICY=PASSIVE``), stdin closed, its own process group,
default signal actions. Its stdout and stderr come through pipes; a thread per
stream appends them to ``stdout.log`` / ``stderr.log`` and feeds the metric
parser, and a flusher thread appends the parsed points to the spool at most
every ``FLUSH_INTERVAL`` seconds. The shim, not the command, writes the spool,
so the daemon follows a wrapped run like any other.

With a ``logdir`` (``traintop run --logdir DIR``) a further thread follows the
TensorBoard event files the command writes there (files already there are not its
own and are left alone). Event files name their scalars and steps exactly, so they
take the place of what the output says: points read from the output are held back
until event files give a point (then they are dropped, and the output is read no
more) or until ``EVENTS_GRACE`` seconds pass without one (then they are recorded).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from engine.common.output_metrics import MetricParser, Point
from engine.common.tb_events import EventDir, TensorBoardMissing, event_files
from engine.run.spool_writer import SpoolWriter
from engine.run.thread_share import sleeping_waits
from engine.rundir.paths import RunDir

FLUSH_INTERVAL = 0.25
# How often the event files of a --logdir are looked at for new scalars.
EVENTS_INTERVAL = 0.5
# How long points read from the output wait for a --logdir's first scalar.
EVENTS_GRACE = 60.0
# Signals the shim ignores; a command must get them with their default action
# (an ignored signal stays ignored across exec).
_SHIM_IGNORED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def _default_signals() -> None:
    for signum in _SHIM_IGNORED:
        signal.signal(signum, signal.SIG_DFL)


class WrappedCommand:
    """A started command, the threads that read its output, and its spool writer."""

    def __init__(self, run_dir: RunDir, launch: dict[str, Any]) -> None:
        config = launch.get("config") or {}
        self.parser = MetricParser(
            config.get("loss_pattern"),
            config.get("metric_patterns") or (),
            bool(config.get("only_patterns")),
        )
        self.spool = SpoolWriter(run_dir.spool, int(launch.get("generation") or 0))
        self._lock = threading.Lock()
        self._pending: list[list[Any]] = []
        self._done = threading.Event()
        self._events_stop = threading.Event()
        logdir = config.get("logdir")
        root = Path(logdir) if isinstance(logdir, str) else None
        # Where points read from the output go: recorded, or held (a --logdir that has
        # given nothing yet), or dropped (None: event files have given points).
        self._parsed: list[list[Any]] | None = self._pending
        self._held: list[list[Any]] = []
        if root is not None:
            self._parsed = self._held
            self._grace_ends = time.monotonic() + EVENTS_GRACE
        before = set(event_files(root)) if root is not None else set()
        # The environment `traintop run` sent (only what runs need, see engine.common.run_env).
        env = sleeping_waits({**(launch.get("env") or os.environ), "PYTHONUNBUFFERED": "1"})
        self.proc = subprocess.Popen(
            list(launch["command"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=launch.get("cwd") or str(run_dir.path),
            env=env,
            process_group=0,
            preexec_fn=_default_signals,
        )
        # Where it goes on from is the command's business: a retried one says it with the
        # first step it names (``_flush``).
        self.spool.state("running", 0, total=None, rewind=False)
        self._rewind_at_first = int(launch.get("generation") or 0) > 1
        # A command that names no step is counted in lines from 0 again: its points go
        # after the last attempt's (the highest step stored; None: none stored).
        last = launch.get("last_step")
        self._counted_after = last + 1 if isinstance(last, int) and self._rewind_at_first else 0
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(
                target=self._pump,
                args=(self.proc.stdout.fileno(), run_dir.stdout, "stdout"),
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(self.proc.stderr.fileno(), run_dir.stderr, "stderr"),
                daemon=True,
            ),
        ]
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
        self._events: threading.Thread | None = None
        if root is not None:
            self._events = threading.Thread(
                target=self._follow_events, args=(root, before, run_dir), daemon=True
            )
        for thread in (*self._threads, self._flusher, self._events):
            if thread is not None:
                thread.start()

    def _pump(self, fd: int, log_path: Any, stream: str) -> None:
        # Incremental: a character split across two reads is decoded whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with open(log_path, "ab") as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                self._add(self.parser_feed(decoder.decode(chunk), stream))

    def parser_feed(self, text: str, stream: str) -> list[Point]:
        """Parse ``text`` under the lock (two streams share one step counter)."""
        with self._lock:
            return self.parser.feed(text, stream)

    def _add(self, points: list[Point]) -> None:
        if points:
            now = time.time()
            with self._lock:
                if self._parsed is not None:
                    self._parsed.extend([step, key, value, now] for step, key, value in points)

    def _follow_events(self, root: Path, before: set[Path], run_dir: RunDir) -> None:
        try:
            events = EventDir(root, skip=before)
        except TensorBoardMissing as exc:  # the CLI checks; a shim elsewhere may still lack it
            self._give_up_events(run_dir, str(exc))
            return
        while True:
            stopping = self._events_stop.wait(EVENTS_INTERVAL)
            try:
                scalars = events.poll()  # after the stop too: what was written last
            except Exception as exc:  # a damaged event file: the output still counts
                self._give_up_events(run_dir, f"cannot read the event files under {root}: {exc}")
                return
            with self._lock:
                if scalars:
                    self._parsed = None
                    self._held.clear()
                    self._pending.extend(list(point) for point in scalars)
                elif self._parsed is self._held and (
                    stopping or time.monotonic() > self._grace_ends
                ):
                    self._release_held()
            if stopping:
                return

    def _give_up_events(self, run_dir: RunDir, why: str) -> None:
        """Say why in the run's stderr log, and record the output's points from now on."""
        with contextlib.suppress(OSError), open(run_dir.stderr, "a", encoding="utf-8") as err:
            err.write(f"traintop: {why}\n")
        with self._lock:
            if self._parsed is self._held:
                self._release_held()

    def _release_held(self) -> None:
        """No event files came in time: record what the output said, and go on doing so."""
        self._pending.extend(self._held)
        self._held.clear()
        self._parsed = self._pending

    def _flush(self) -> None:
        with self._lock:
            points = self._pending[:]
            self._pending.clear()  # the same list: ``_parsed`` may point at it
            first = self.parser.first_named
            if self._parsed is None and points:  # from event files, which name their steps
                first = min(point[0] for point in points)
        if points and self._rewind_at_first:  # a retry
            # Lines counted before the output named a step go after the last attempt's
            # points (those its first named step would drop at once, not at all); from
            # that step on, it logs those steps anew.
            shift = self._counted_after
            self._write([[p[0] + shift, *p[1:]] for p in points
                         if first is None or p[0] + shift < first])
            if first is None:
                return
            self._rewind_at_first = False
            self.spool.rewind(first)
            points = [p for p in points if p[0] >= first]
        self._write(points)

    def _write(self, points: list[list[Any]]) -> None:
        if points:
            # STEP shows the script's last step (step 300 printed: 300), not one past it.
            done = max(point[0] for point in points)
            record = {"t": "metrics", "gen": self.spool.generation, "points": points}
            self.spool.write({**record, "done": done})

    def _flush_loop(self) -> None:
        while not self._done.wait(FLUSH_INTERVAL):
            self._flush()

    def close(self, timeout: float = 5.0) -> None:
        """After the command and its group are gone: read the rest, flush every point."""
        for thread in self._threads:
            thread.join(timeout)
        with self._lock:
            tail = self.parser.finish()
        self._add(tail)
        if self._events is not None:
            self._events_stop.set()
            self._events.join(timeout)
        self._done.set()
        self._flusher.join(timeout)
        self._flush()
