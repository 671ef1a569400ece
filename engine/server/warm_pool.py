"""The warm pool: a fork server with torch imported, so a start skips the import.

A cold start of a ``train(run)`` worker spends most of its time importing torch
(seconds on a GPU machine). The daemon therefore keeps one fork server
(``engine.run.warm_worker``: ``engine.run.worker --zygote``) under ``warm/<daemon
pid>-<n>/``. A launch writes the run directory to its stdin; it answers ``took``,
forks the run's worker and shim (in their own session: they outlive the daemon as
a cold start's do) and answers the shim's pid, in a few milliseconds. Every launch
is served so, however many come at once (a sweep, a queue's turn, PBT's forks), and
the forked workers share the server's pages of torch until they write them.

The server is started by the first launch (a daemon that never starts a run never
pays for one) and is never a run: it is in no table, no queue and no telemetry, and
holds no GPU (CUDA is initialised only in the forked worker). A launch never blocks
on it: while the server imports torch (started less than DEFER_S ago), a run waits
for it as a ``PooledShim`` and a later tick hands it over, or starts it cold if the
server dies or is late (a cold start beside the import would take as long, on the
same cores). A server that has died, or was started from other code than the files
now on disk (a stamp of their sizes and times), is passed over and the run started
cold; so is a run it answers ``cold`` for (see ``warm_worker``). The server reads
EOF on its stdin when the daemon ends, however it ends, and exits; runs still waiting
for it then start cold. ``TRAINTOP_WARM_POOL=0`` turns the pool off.
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
from pathlib import Path

from engine.run.shim import record_failed_start, worker_env
from engine.run.warm_worker import COLD, TOOK
from engine.rundir.paths import RunDir, StatePaths, read_json
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
# The most a launch waits for each answer of the server (it answers in milliseconds;
# one that does not is killed, and the run started cold unless it had said ``took``).
TOOK_TIMEOUT_S = 1.0
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


class WarmPool:
    """One fork server, ready for every launch (see the module docstring)."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.enabled = enabled()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._stamp = ""
        self._ready = False
        self._buffer = b""  # what the server said that is not read yet
        self._unnamed: list[PooledShim] = []  # taken, their ``pid N`` not read yet
        self._deferred: list[tuple[RunDir, PooledShim, ColdStart]] = []  # for the server
        self._spawned_at = 0.0
        self._count = 0
        self._wanted = False  # set by the first launch
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S
        self._next_stale_check = 0.0
        self._ending: list[subprocess.Popen[bytes]] = []  # discarded servers, not yet reaped
        # Pools of daemons that are gone ended with them; their directories did not.
        shutil.rmtree(paths.warm, ignore_errors=True)

    def start(self, rundir: RunDir, cold: ColdStart) -> ShimProcess:
        """Start ``rundir``'s generation (launch.json written); its shim.

        Forked by the server when it is ready; when it is still importing (started less
        than DEFER_S ago), the run waits for it (a cold start would take as long, and
        import torch beside it on the same cores) and ``tick`` hands it over, or starts
        it by ``cold`` if the server dies or is not ready by then. Else, and for a run
        the server answers ``cold`` for, ``cold`` starts it now. It never waits for the
        server's fork: only for its ``took`` (well under a millisecond; at most
        TOOK_TIMEOUT_S from one that hangs, which is then killed).
        """
        self._wanted = True
        if not self.enabled:
            return cold()
        proc = self._waiting()
        if proc is None or code_stamp() != self._stamp:
            self.tick(force_stale_check=proc is not None)
            if not self._coming():
                return cold()
            shim = PooledShim()
            self._deferred.append((rundir, shim, cold))
            return shim
        return self._hand(proc, rundir, cold, PooledShim())

    def _coming(self) -> bool:
        """Whether the server is importing still, and was started less than DEFER_S ago."""
        proc = self._proc
        return (proc is not None and proc.poll() is None and not self._ready
                and time.monotonic() - self._spawned_at < DEFER_S)

    def _hand(self, proc: subprocess.Popen[bytes], rundir: RunDir, cold: ColdStart,
              shim: PooledShim) -> ShimProcess:
        """Hand ``rundir`` to the ready server ``proc``; ``shim`` (forked), or ``cold``'s
        when the server answers ``cold`` or went silent before it took the run."""
        assert proc.stdin is not None
        try:
            proc.stdin.write(f"{rundir.path}\n".encode())
            proc.stdin.flush()
        except OSError:  # it died since _waiting looked
            self._kill(proc)
            return self._cold(rundir, shim, cold)
        answer = self._read(proc, TOOK_TIMEOUT_S)
        if answer == TOOK:
            self._unnamed.append(shim)
        elif answer == COLD or TOOK.strip() not in self._kill(proc).splitlines():
            return self._cold(rundir, shim, cold)
        else:  # it hangs or died, having taken the run: its worker.json will tell
            log.warning("the warm pool took run %s and went silent", rundir.path.name)
        return shim

    def _cold(self, rundir: RunDir, shim: PooledShim, cold: ColdStart) -> ShimProcess:
        """Start the run cold, as ``shim`` (a run handed back or given up waiting)."""
        try:
            shim.cold = cold()
        except OSError as exc:  # too many processes...: the run fails, saying why
            launch = read_json(rundir.launch)
            generation = launch.get("generation") if isinstance(launch, dict) else None
            record_failed_start(rundir, generation, f"cannot start the shim: {exc}")
        return shim

    def _read(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
        """The server's next answer to a launch (with its newline), or b"" if none comes
        within ``timeout``; the pids it says on the way go to their shims."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                if not line.startswith(b"pid "):
                    return line + newline
                number = line[4:].strip()
                if self._unnamed:
                    self._unnamed.pop(0).pid = (int(number) or None) if number.isdigit() else None
                continue
            left = max(deadline - time.monotonic(), 0.0)  # 0: only what is there now
            if not select.select([proc.stdout], [], [], left)[0]:
                return b""
            try:
                chunk = os.read(proc.stdout.fileno(), 4096)
            except OSError:
                chunk = b""
            if not chunk:
                return b""
            self._buffer += chunk

    def _kill(self, proc: subprocess.Popen[bytes]) -> bytes:
        """End a server that does not answer (SIGKILL: it forks nothing more); what it had
        said and was not read yet."""
        said = self._buffer
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TOOK_TIMEOUT_S)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(proc.stdout.fileno(), False)
                said += proc.stdout.read() or b""
        if proc is self._proc:
            self._discard()
            self.tick()
        return said

    def tick(self, force_stale_check: bool = False) -> None:
        """Replace a server that died or is stale, and start one where none is."""
        self._ending = [proc for proc in self._ending if proc.poll() is None]
        if self._unnamed and self._proc is not None:
            self._read(self._proc, 0)  # the pids of the shims it forked since
        if not (self.enabled and self._wanted):
            return
        now = time.monotonic()
        if self._proc is not None and self._proc.poll() is not None:
            self._died()
        elif self._waiting() is not None and (force_stale_check or now >= self._next_stale_check):
            self._next_stale_check = now + STALE_CHECK_S
            if code_stamp() != self._stamp:
                log.info("the warm pool is stale (code changed); starting a new one")
                self._discard()
        if self._proc is None and now >= self._retry_at:
            self._spawn()
        if self._deferred and (self._waiting() is not None or not self._coming()):
            self._hand_deferred()

    def _hand_deferred(self) -> None:
        """The runs waiting for the server: forked by it now that it is ready, else cold."""
        waiting, self._deferred = self._deferred, []
        for rundir, shim, cold in waiting:
            proc = self._waiting()
            if proc is None or code_stamp() != self._stamp:
                self._cold(rundir, shim, cold)
            else:
                self._hand(proc, rundir, cold, shim)

    def close(self) -> None:
        """End the server (the daemon stops); the runs it forked go on, and those still
        waiting for it start cold."""
        for rundir, shim, cold in self._deferred:
            self._cold(rundir, shim, cold)
        self._deferred = []
        if self._proc is not None:
            self._discard()

    def _waiting(self) -> subprocess.Popen[bytes] | None:
        """The server if it is alive and has imported torch."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._dir is None:
            return None
        if not self._ready:
            self._ready = (self._dir / "ready.json").exists()
            if self._ready:
                self._retry_s = RETRY_FIRST_S
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
            self._retry_later()
        self._proc = None
        self._remove_dir()

    def _retry_later(self) -> None:
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)

    def _discard(self) -> None:
        """Close the server's stdin: it exits (reaped by a later tick).

        Not waited for: a server still importing torch sees the EOF only once that
        is done, and the daemon must not block meanwhile.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            self._ending.append(proc)
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir, self._ready, self._buffer = None, False, b""
        self._unnamed = []  # a pid they never get: their worker.json will say
