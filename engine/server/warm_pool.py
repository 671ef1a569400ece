"""The warm pool: a fork server with torch imported, so a start skips the import.

A cold start of a ``train(run)`` worker spends most of its time importing torch
(seconds on a GPU machine). The daemon therefore keeps one fork server
(``engine.run.warm_worker``: ``engine.run.worker --zygote``) under ``warm/<daemon
pid>-<n>/``. A launch writes the run directory to its stdin and returns; the server
answers ``took``, forks the run's worker and shim (in their own session: they outlive
the daemon as a cold start's do) and answers the shim's pid, in a few milliseconds,
and the daemon's next tick reads that. So every launch is served warm, however many
come at once (a sweep, a queue's turn, PBT's forks), and the daemon answers while the
server forks them; the forked workers share the server's pages of torch until they
write them.

The server is started by the first launch (a daemon that never starts a run never
pays for one) and is never a run: it is in no table, no queue and no telemetry, and
holds no GPU (CUDA is initialised only in the forked worker). While it imports torch
(started less than DEFER_S ago), launches wait for it (a cold start beside the
import would take as long, on the same cores). A server that has died, or was
started from other code than the files now on disk (a stamp of their sizes and
times), is passed over and the run started cold; so is a run it answers ``cold`` for
(see ``warm_worker``). A server that dies, or does not answer for ANSWER_TIMEOUT_S, is
replaced, and the runs it had not taken start cold. The server reads EOF on its
stdin when the daemon ends, however it ends, and exits; runs still waiting for it
then start cold. ``TRAINTOP_WARM_POOL=0`` turns the pool off.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.run.shim import fail_launch, worker_env
from engine.run.warm_worker import COLD, TOOK
from engine.rundir.paths import RunDir, StatePaths
from engine.rundir.state_dir import ensure_private_dir
from engine.server.backends.base import ColdStart, ShimProcess

log = logging.getLogger("traintop.warm_pool")

ENV_SWITCH = "TRAINTOP_WARM_POOL"
# A server that died before it was ready (say torch fails to import) is retried after
# this long, doubling up to the maximum, so a broken install does not spin.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
# How often a waiting server's code stamp is compared with the files on disk.
STALE_CHECK_S = 2.0
# What the daemon's stop gives the server to answer the launches it was sent, and a
# killed server to be gone.
LAST_WORDS_S = 1.0
# A server that has not answered a launch this long after its line went is killed (it
# answers in milliseconds, seconds on a machine under a burst of starts); the launches
# it had not taken then start cold.
ANSWER_TIMEOUT_S = 10.0
# Lines sent to the server and not answered yet, at most (~60 bytes each: well within
# a pipe's 64 KiB, so a write never blocks the daemon); the rest wait for a tick.
MAX_IN_FLIGHT = 256
# How long after the server was started a launch still waits for it rather than start
# cold: it imports torch in 2-5 s (a cold start takes as long, on the same cores).
DEFER_S = 15.0
_ROOT = Path(__file__).resolve().parents[2]
# What a worker runs: a change in any of these makes a waiting server stale.
_WORKER_CODE = ("engine/run", "engine/rundir", "engine/common", "traintop")


def code_stamp() -> str:
    """A digest of the worker's source files (name, size, mtime) and of torch's install."""
    digest = hashlib.sha1()
    files = [p for part in _WORKER_CODE for p in sorted((_ROOT / part).rglob("*.py"))]
    spec = importlib.util.find_spec("torch")  # found, not imported
    if spec is not None and spec.origin:
        files.append(Path(spec.origin))
    for path in files:
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def enabled() -> bool:
    """Whether the pool is on (``TRAINTOP_WARM_POOL=0`` turns it off)."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


class PooledShim:
    """The shim of a run the pool started. Forked by the server, it is the server's
    child, not the daemon's, so it is followed by pid (its exit code is in the run's
    exit.json, as a re-adopted run's); started cold by the pool after waiting for a
    server that did not come, it is that ``Popen``. Neither yet: the run waits for the
    server to be ready, or the server took it and its pid is not read yet (or never
    will be: the server went silent or its fork failed; worker.json or exit.json say)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.cold: ShimProcess | None = None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.cold is not None:
                self.returncode = self.cold.poll()
            elif self.pid is not None:
                try:
                    os.kill(self.pid, 0)
                except (ProcessLookupError, PermissionError):  # gone (the pid is not ours)
                    self.returncode = 0
        return self.returncode


@dataclass
class _Launch:
    """A generation given to the pool: sent to the server (or waiting to be), not yet
    answered with its shim's pid or ``cold``."""

    rundir: RunDir
    shim: PooledShim
    cold: ColdStart
    sent: float | None = None  # when its line went to the server (monotonic)
    took: bool = False  # the server said ``took``: it forks it, or did


class WarmPool:
    """One fork server, for every launch (see the module docstring).

    Nothing here waits for the server: a launch is a line written to it, and its
    answers (``took``, then ``pid N``; or ``cold``) come in the order the lines went
    and are read by ``tick``, so the daemon answers while the server forks a burst.
    """

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.enabled = enabled()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._stamp = ""
        self._ready = False
        self._buffer = b""  # what the server said that is not read yet
        self._launches: deque[_Launch] = deque()  # in the order their lines go
        self._spawned_at = 0.0
        self._count = 0
        self._wanted = False  # set by the first launch
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S
        self._next_stale_check = 0.0
        self._ending: list[subprocess.Popen[bytes]] = []  # discarded servers, not yet reaped
        self.forked = 0  # launches the servers forked, since the daemon started
        self.cold_starts = 0  # launches it started cold (no server, or it said cold)
        self._problem: str | None = None  # why the last server ended before it was ready
        # Pools of daemons that are gone ended with them; their directories did not.
        shutil.rmtree(paths.warm, ignore_errors=True)

    def start(self, rundir: RunDir, cold: ColdStart) -> ShimProcess:
        """Start ``rundir``'s generation (launch.json written); its shim.

        Forked by the server when it is ready, or when it is still importing torch
        (started less than DEFER_S ago: a cold start would take as long, beside it on
        the same cores), once it is. Started by ``cold`` now when there is no server
        to wait for, and later (by ``tick``) if the server answers ``cold`` for it, or
        dies or hangs before it took the run. Returns at once either way.
        """
        self._wanted = True
        if not self.enabled:
            return cold()
        self.tick(force_stale_check=True)
        if self._waiting() is None and not self._coming():
            self.cold_starts += 1
            return cold()
        launch = _Launch(rundir, PooledShim(), cold)
        self._launches.append(launch)
        self._send()
        return launch.shim

    def tick(self, force_stale_check: bool = False) -> None:
        """Read the server's answers; start cold what it cannot serve; replace a server
        that died or is stale, and start one where none is."""
        self._ending = [proc for proc in self._ending if proc.poll() is None]
        proc = self._proc
        if proc is not None and self._launches:
            self._collect(proc, 0)
            sent = [launch.sent for launch in self._launches if launch.sent is not None]
            if proc.poll() is None and sent and time.monotonic() - sent[0] > ANSWER_TIMEOUT_S:
                log.warning("the warm pool did not answer in %.0f s: it is killed",
                            ANSWER_TIMEOUT_S)
                self._end(proc, kill=True)
        if not (self.enabled and self._wanted):
            return
        now = time.monotonic()
        if self._proc is not None and self._proc.poll() is not None:
            self._died()
        elif (self._waiting() is not None and not self._launches
              and (force_stale_check or now >= self._next_stale_check)):
            self._next_stale_check = now + STALE_CHECK_S
            if code_stamp() != self._stamp:
                log.info("the warm pool is stale (code changed); starting a new one")
                self._end(self._proc)
        if self._proc is None and now >= self._retry_at:
            self._spawn()
        if self._launches:
            if self._waiting() is not None:
                self._send()
            elif not self._coming():  # no server will come in time: these start cold
                self._start_cold(self._launches)

    def close(self) -> None:
        """End the server (the daemon stops): the runs it forked go on; those it has not
        answered for yet are waited for a moment, then started cold."""
        if self._proc is not None:
            self._collect(self._proc, LAST_WORDS_S, until_answered=True)
            self._end(self._proc)
        self._start_cold(self._launches)

    def describe(self) -> dict[str, Any]:
        """The pool as ``engine status`` says it: its state (off, not started, starting,
        ready, retrying), the server's pid, how many launches it forked and how many
        started cold, and why the last server died before it was ready. Read on a
        reader thread: it only reads what the loop's last tick left."""
        proc = self._proc
        if not self.enabled:
            state = "off"
        elif not self._wanted:
            state = "not started"
        elif proc is None:
            state = "retrying"
        else:
            state = "ready" if self._ready else "starting"
        return {"state": state, "pid": None if proc is None else proc.pid,
                "forked": self.forked, "cold": self.cold_starts, "problem": self._problem}

    def _coming(self) -> bool:
        """Whether the server is importing still, and was started less than DEFER_S ago."""
        proc = self._proc
        return (proc is not None and proc.poll() is None and not self._ready
                and time.monotonic() - self._spawned_at < DEFER_S)

    def _send(self) -> None:
        """Write the line of every launch not sent yet to the ready server."""
        proc = self._waiting()
        if proc is None:
            return
        assert proc.stdin is not None
        in_flight = sum(launch.sent is not None for launch in self._launches)
        for launch in self._launches:
            if launch.sent is not None:
                continue
            if in_flight >= MAX_IN_FLIGHT:  # its pipe could fill and block the daemon
                return
            in_flight += 1
            try:
                proc.stdin.write(f"{launch.rundir.path}\n".encode())
                proc.stdin.flush()
            except OSError:  # it died: tick finds out and starts the rest cold
                return
            launch.sent = time.monotonic()

    def _collect(self, proc: subprocess.Popen[bytes], timeout: float,
                 until_answered: bool = False) -> None:
        """Read what the server said (for up to ``timeout``; 0: what is there now) and
        give each answer to its launch, the oldest not answered."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                self._answer(line + newline)
                continue
            if until_answered and not any(launch.sent for launch in self._launches):
                return
            left = max(deadline - time.monotonic(), 0.0)
            if not select.select([proc.stdout], [], [], left)[0]:
                return
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except OSError:
                chunk = b""
            if not chunk:
                return
            self._buffer += chunk

    def _answer(self, line: bytes) -> None:
        """One answer of the server, to the oldest launch it has not answered for."""
        if not self._launches or self._launches[0].sent is None:
            log.warning("the warm pool said %r for no launch", line)
            return
        launch = self._launches[0]
        if line == TOOK:
            launch.took = True
        elif line == COLD:
            self._start_cold([self._launches.popleft()])
        elif line.startswith(b"pid ") and launch.took:
            number = line[4:].strip()
            # 0: the fork failed, and its exit.json says why
            launch.shim.pid = (int(number) or None) if number.isdigit() else None
            self._launches.popleft()
            self.forked += launch.shim.pid is not None
            if launch.shim.pid is not None:
                log.info("run in %s forked by the warm pool (shim %d)",
                         launch.rundir.path.name, launch.shim.pid)
        else:
            log.warning("the warm pool said %r for run %s", line, launch.rundir.path.name)

    def _start_cold(self, launches: Iterable[_Launch]) -> None:
        """Start these launches cold (each taken off the pool's list)."""
        for launch in list(launches):
            with contextlib.suppress(ValueError):
                self._launches.remove(launch)
            self.cold_starts += 1
            try:
                launch.shim.cold = launch.cold()
            except OSError as exc:  # too many processes...: the run fails, saying why
                fail_launch(launch.rundir, f"cannot start the shim: {exc}")

    def _end(self, proc: subprocess.Popen[bytes] | None, kill: bool = False) -> None:
        """Let the server go (``kill``: at once, SIGKILL), after reading what it said:
        a launch it took is its (its worker.json will say); any other starts cold."""
        if proc is None:
            return
        # Lines it was sent and has not answered: alive, it would still read and fork
        # them after its stdin closes, beside the cold starts below.
        kill = kill or any(launch.sent is not None and not launch.took
                           for launch in self._launches)
        if kill:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=LAST_WORDS_S)
        if proc.poll() is not None:
            self._collect(proc, 0)  # its last words are still in the pipe
        for launch in [launch for launch in self._launches if launch.took]:
            log.warning("the warm pool took run %s and ended", launch.rundir.path.name)
            self._launches.remove(launch)
        self._start_cold([launch for launch in self._launches if launch.sent is not None])
        if proc is self._proc:
            self._proc = None
            self._buffer = b""
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            self._ending.append(proc)  # reaped by a later tick, never waited for
            self._remove_dir()

    def _waiting(self) -> subprocess.Popen[bytes] | None:
        """The server if it is alive and has imported torch."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._dir is None:
            return None
        if not self._ready:
            self._ready = (self._dir / "ready.json").exists()
            if self._ready:
                self._retry_s, self._problem = RETRY_FIRST_S, None
        return proc if self._ready else None

    def _spawn(self) -> None:
        self._count += 1
        pool_dir = self.paths.warm / f"{os.getpid()}-{self._count}"
        try:
            ensure_private_dir(pool_dir)
            with open(pool_dir / "worker.log", "ab") as server_log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "engine.run.worker", "--zygote", str(pool_dir)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=server_log,
                    start_new_session=True,
                    close_fds=True,
                    env=worker_env({}),  # what a run that sets no env of its own gets
                    cwd=pool_dir,
                )
        except OSError as exc:  # a full disk, too many processes: runs start cold
            log.warning("cannot start the warm pool: %s", exc)
            self._retry_later()
            return
        self._dir, self._ready, self._stamp = pool_dir, False, code_stamp()
        self._buffer, self._spawned_at = b"", time.monotonic()
        self._next_stale_check = time.monotonic() + STALE_CHECK_S

    def _died(self) -> None:
        """The server ended: say why once, and retry later if it never got ready."""
        assert self._proc is not None and self._dir is not None
        if not self._ready and not (self._dir / "ready.json").exists():
            tail = ""
            with contextlib.suppress(OSError):
                tail = (self._dir / "worker.log").read_text(errors="replace")[-2000:]
            log.warning("the warm pool ended before it was ready (exit %s): %s",
                        self._proc.returncode, tail.strip() or "no output")
            lines = tail.strip().splitlines()
            self._problem = lines[-1] if lines else f"exit {self._proc.returncode}"
            self._retry_later()
        self._end(self._proc)

    def _retry_later(self) -> None:
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir, self._ready = None, False
