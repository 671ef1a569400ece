"""The ``Run`` object handed to a workload's ``train(run)``.

Step boundaries (each turn of ``run.steps``) are where the worker flushes
metrics and obeys control commands: pause, resume, checkpoint and release.
``run.log`` only appends to a list, so it costs well under a microsecond or two.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.run.control_reader import ControlReader
from engine.run.spool_writer import LoggedCall, MetricsBatch, SpoolWriter
from engine.run.thread_share import ThreadShare
from engine.rundir.checkpoint_files import (
    FINAL,
    auto_name,
    drop_older_autos,
    fork_name,
    release_name,
)
from engine.rundir.disk_space import out_of_space, refuse_if_fake_full, when_room
from engine.rundir.paths import RunDir, remove_stray_temporaries, write_json_atomic

FLUSH_INTERVAL_S = 0.25
FLUSH_MAX_CALLS = 1024  # flush sooner when a step logs a lot
PAUSE_POLL_S = 0.5  # a paused worker rereads control this often even without a nudge


class RunConfig(dict[str, Any]):
    """Hyper-parameters: ``cfg["lr"]`` and ``cfg.lr`` are the same value.

    A key wins over a dict method of the same name: with a key ``items``,
    ``cfg.items`` is its value (call ``dict.items(cfg)`` for the method).
    Mapping access, ``dict(cfg)``, ``**cfg``, copy and pickle all keep working;
    ``json.dumps`` calls ``cfg.items()``, so give it ``dict(cfg)`` in that case.
    """

    def __getattribute__(self, name: str) -> Any:
        # Dunder names stay the dict's, so the mapping protocol is never shadowed.
        if not name.startswith("__") and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return super().__getattribute__(name)

    def __reduce__(self) -> tuple[type[RunConfig], tuple[dict[str, Any]]]:
        # The default reduction of a dict subclass calls self.items(): maybe a key.
        return (RunConfig, (dict(self),))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class Run:
    """One generation of one run, as seen from inside the worker process."""

    def __init__(self, run_dir: Path, launch: Mapping[str, Any],
                 config: Mapping[str, Any] | None = None) -> None:
        self.dir = Path(run_dir)
        self.id: str = launch["run_id"]
        self.name: str = launch.get("name") or self.id
        self.generation = int(launch.get("generation", 1))
        self.device: str = launch.get("device") or "cpu"
        self.config = RunConfig(config if config is not None else launch.get("config") or {})
        self.step = 0
        self.total: int | None = None
        self.finished = False
        paths = RunDir(self.dir)
        self._checkpoint_dir = paths.checkpoints
        # A worker killed in the middle of a checkpoint left its temporary behind.
        remove_stray_temporaries(paths.checkpoints)
        self._spool = SpoolWriter(paths.spool, self.generation)
        self._control = ControlReader(paths.control, int(launch.get("control_offset") or 0))
        self._pending: deque[dict[str, Any]] = deque()
        self._threads = ThreadShare()
        self._resume_from: str | None = launch.get("resume_from")
        self._resume_ckpt: dict[str, Any] | None = None
        self._rng_restored = False
        self._tracked: dict[str, object] = {}
        self._initial_hparams: dict[str, list[dict[str, Any]]] = {}
        self._buf: list[LoggedCall] = []
        self._copying: MetricsBatch | None = None  # a flushed batch whose GPU values are on the way
        self._now = time.time()
        self._last_flush = self._now
        self._started = False
        self._nudged = False
        # Checkpoints of its own (--checkpoint-every): the last one's step and time.
        self._every = CheckpointEvery.from_wire(launch.get("checkpoint_every"))
        self._auto_step = 0
        self._auto_time = self._now
        self._pid = os.getpid()
        # When this generation's start-up phases ended (unix times), filled in by the
        # worker and here, written to startup.json after the first step.
        self.startup: dict[str, float | bool | None] = {"generation": self.generation}
        self._startup_file = paths.startup
        # Self-pipe: the SIGUSR1 handler writes a byte, a paused worker select()s
        # on it. Unlike threading.Event.set, os.write takes no lock in a handler.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # ---- the workload API ------------------------------------------------

    def track(self, **objects: object) -> None:
        """Name what checkpoints hold; when resuming, restore it (and RNG) right away."""
        from engine.run.checkpoint import optimizer_hparams, restore

        self._tracked.update(objects)
        for name, obj in objects.items():
            hparams = optimizer_hparams(obj)  # as built from this run's config
            if hparams is not None:
                self._initial_hparams[name] = hparams
        if self._resume_from:
            ckpt = self._resume_checkpoint()
            restore(ckpt, objects)
            self._rng_restored = True
            self.step = int(ckpt["step"])

    def steps(self, total: int) -> Iterator[int]:
        """Yield step numbers from ``run.step`` to ``total - 1``, obeying control in between."""
        self._begin(total)
        first = True
        while True:
            self._boundary()
            if self.step >= total:
                break
            yield self.step
            self.step += 1
            if first:
                first = False
                self._write_startup()
        self._finish(save=True)

    def log(self, **metrics: Any) -> None:
        """Record metrics for the current step (floats, ints or scalar tensors).

        A one-element CPU tensor is read now (that costs no sync). Any other
        tensor is read when the buffer is flushed, which keeps GPU tensors free
        of a sync per step, so do not change it in place afterwards.
        """
        for key, value in metrics.items():
            if value.__class__ is float:
                continue
            if getattr(value, "is_cpu", False) and value.numel() == 1:
                # Holding CPU tensors until the flush measured ~6-16% slower on a
                # small MLP (0.6 ms steps); reading them now costs ~1 us.
                metrics[key] = value.item()
            elif getattr(value, "requires_grad", False):
                metrics[key] = value.detach()  # keep no autograd graph alive
        self._buf.append((self.step, self._now, metrics))

    # ---- used by the worker ----------------------------------------------

    def flush(self, wait: bool = True) -> None:
        """Write buffered metrics as spool records, in the order they were logged.

        ``wait=False`` (a step boundary): a batch whose GPU values are still on
        their way to the host is kept for the next flush instead of waited for.
        Everything else (pause, checkpoint, release, the end) waits, so that its
        record follows every point logged before it.
        """
        calls, self._buf = self._buf, []
        self._last_flush = time.time()
        batches = [self._copying] if self._copying is not None else []
        if calls:
            batches.append(MetricsBatch(calls))
        self._copying = None
        for batch in batches:
            if not wait and batch is batches[-1] and not batch.ready():
                self._copying = batch
            else:
                self._spool.write_batch(batch)
        # A cheap stat catches a command whose nudge came before our handler.
        if self._control.has_new():
            self._nudged = True

    def mark_finished(self) -> None:
        """Record ``finished`` if ``steps()`` did not (train returned some other way)."""
        if not self.finished:
            self._finish(save=False)

    def record_error(self, exc: BaseException) -> None:
        """Flush what was logged and record why the run failed (waiting for room if need be)."""
        self.flush()
        self._spool.error(f"{type(exc).__name__}: {exc}")
        self._spool.wait_until_written()

    def install_signal_handlers(self) -> None:
        """SIGUSR1: a control command is waiting; SIGTERM: flush and exit 143."""
        self._pid = os.getpid()
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGTERM, self._on_term)

    # ---- internals -------------------------------------------------------

    # Forked children (DataLoader workers) inherit these handlers and a copy of
    # the buffer: they must neither obey control nor write our metrics twice.

    def _on_usr1(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return
        self._nudged = True
        # A full pipe is fine: the paused loop wakes up anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self._pid:
            self.flush()
        self._leave(143)

    def _resume_checkpoint(self) -> dict[str, Any]:
        if self._resume_ckpt is None:
            from engine.run.checkpoint import load_checkpoint

            assert self._resume_from is not None
            self._resume_ckpt = load_checkpoint(self._resume_from)
            self.startup["checkpoint_loaded"] = time.time()
        return self._resume_ckpt

    def _write_startup(self) -> None:
        """Write startup.json: how long this generation took to its first step."""
        self.startup["first_step"] = time.time()
        # Only a measurement: a full disk or a gone directory must not stop training.
        with contextlib.suppress(OSError):
            write_json_atomic(self._startup_file, self.startup)

    def _begin(self, total: int) -> None:
        self.total = total
        if self._started:
            return
        self._started = True
        if self._resume_from:
            ckpt = self._resume_checkpoint()
            if not self._rng_restored:  # nothing was tracked: still resume step and RNG
                from engine.run.checkpoint import restore_rng_states

                restore_rng_states(ckpt["rng"])
            self.step = int(ckpt["step"])
            self._resume_ckpt = None  # free the loaded tensors
        self._spool.state("running", self.step, total=total)
        self._nudged = True  # commands may have arrived before our handler existed
        self._auto_step, self._auto_time = self.step, time.time()

    def _boundary(self) -> None:
        now = self._now = time.time()
        if self._nudged:
            self._handle_control()
        if (now - self._last_flush >= FLUSH_INTERVAL_S or now < self._last_flush
                or len(self._buf) >= FLUSH_MAX_CALLS):
            self.flush(wait=False)
        every = self._every
        if every is not None and every.due(self.step, self._auto_step, now, self._auto_time) \
                and (self.total is None or self.step < self.total):
            self._auto_checkpoint()

    def _auto_checkpoint(self) -> None:
        """Write the run's own checkpoint, then drop the one before it. Nobody waits for
        it: one the disk refuses (full, gone read-only) is skipped, said on stderr, and
        training goes on.

        The points logged before it go to the spool first: a run killed after the
        checkpoint goes on from there, and would never log again the points that were
        still in this process's buffer."""
        self.flush()
        self._auto_step, self._auto_time = self.step, time.time()
        path = self._checkpoint_dir / auto_name(self.step)
        try:
            self._write_checkpoint(path)
        except Exception as exc:  # a missed checkpoint must not end the run
            why = "the disk is full" if out_of_space(exc) else f"{type(exc).__name__}: {exc}"
            print(f"traintop: no checkpoint at step {self.step} ({why}); training goes on",
                  file=sys.stderr, flush=True)
            return
        drop_older_autos(self._checkpoint_dir, path)

    def _handle_control(self) -> None:
        paused = False
        while True:
            # Clear the nudge before reading, so one that comes after is not lost.
            self._nudged = False
            self._drain_wake()
            self._pending.extend(self._control.read_new())
            while self._pending:
                paused = self._apply(self._pending.popleft(), paused)
            if not paused:
                return
            self._wait_for_nudge(PAUSE_POLL_S)

    def _apply(self, command: Mapping[str, Any], paused: bool) -> bool:
        """Carry out one command; returns whether the run is paused afterwards."""
        cmd = command.get("cmd")
        if cmd == "pause" and not paused:
            self.flush()
            self._spool.state("paused", self.step)
            return True
        if cmd == "resume" and paused:
            self._spool.state("resumed", self.step)
            self._now = time.time()  # points after a pause carry the time they happen
            return False
        if cmd == "checkpoint":
            path = self._save(fork_name(self.step))
            self.flush()
            self._spool.checkpoint(command.get("request"), self.step, path)
        elif cmd == "release":
            path = self._save(release_name(self.step))
            self.flush()
            self._spool.state("released", self.step, checkpoint=path)
            self._spool.wait_until_written()
            self._leave(0)
        elif cmd == "threads":  # this run's share of the cores (engine.server.cores)
            self._threads.apply(command.get("request"))
        elif cmd not in ("pause", "resume"):
            print(f"traintop: ignored unknown control command {cmd!r}", file=sys.stderr)
        return paused

    def _save(self, filename: str) -> str:
        """Write a checkpoint; on a full disk, wait for room (it was asked for). The run's
        own ones (``--checkpoint-every``) before it go: it is newer than any of them."""
        path = self._checkpoint_dir / filename
        when_room(lambda: self._write_checkpoint(path))
        if filename != fork_name(self.step):  # a fork's file is its children's, not ours
            drop_older_autos(self._checkpoint_dir, path)
        return str(path)

    def _write_checkpoint(self, path: Path) -> None:
        """Write what is tracked, the step, config and RNG to ``path`` (atomically)."""
        from engine.run.checkpoint import save_checkpoint

        refuse_if_fake_full()
        save_checkpoint(path, self.step, self._tracked, self.config, self._initial_hparams)

    def _finish(self, save: bool) -> None:
        path = self._save(FINAL) if save and self._tracked else None
        self.flush()
        self._spool.state("finished", self.step, checkpoint=path)
        # The process ends next: what the disk refused so far must be written first.
        self._spool.wait_until_written()
        self.finished = True

    def _leave(self, code: int) -> None:
        """End the process now; an attached run (``traintop.init``) records its exit first."""
        _exit(code)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _wait_for_nudge(self, timeout: float) -> None:
        select.select([self._wake_r], [], [], timeout)


def _exit(code: int) -> None:
    """Leave now (no atexit, no waiting for user threads), output flushed first."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
