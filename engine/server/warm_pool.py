"""The warm pool: one worker kept waiting with torch imported, so a start skips the import.

A cold start of a ``train(run)`` worker spends most of its time importing torch
(seconds on a GPU machine). The daemon therefore keeps one warm shim
(``engine.run.warm_shim``) with its warm worker waiting under ``warm/<daemon
pid>-<n>/``; a launch hands it the run directory through the shim's stdin, reads
its ``took`` (a millisecond), and gets that shim as the run's own; a replacement
is started at once. The pool is started by the first launch (a daemon that never
starts a run never pays for one) and is never a run: it is in no table, no queue
and no telemetry, and holds no GPU (CUDA is initialised only after the
handover).

A launch never waits for it: a pool that is not ready yet, has died, or was
started from other code than the files now on disk (a stamp of their sizes and
times) is passed over, and the caller starts the run cold. The pool's shim reads
EOF on its stdin when the daemon ends, however it ends, and takes its worker
with it. ``TRAINTOP_WARM_POOL=0`` turns the pool off.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.rundir.paths import RunDir, StatePaths, child_env, read_json
from engine.rundir.state_dir import ensure_private_dir

log = logging.getLogger("traintop.warm_pool")

ENV_SWITCH = "TRAINTOP_WARM_POOL"
# A pool that died before it was ready (say torch fails to import) is retried after
# this long, doubling up to the maximum, so a broken install does not spin.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
# How often a waiting pool's code stamp is compared with the files on disk.
STALE_CHECK_S = 2.0
# The most a launch waits for the warm shim to say it took the run (it answers in
# about a millisecond; a shim that does not is killed and the run started cold).
TOOK_TIMEOUT_S = 1.0
TOOK = b"took\n"
_ROOT = Path(__file__).resolve().parents[2]
# What a worker runs: a change in any of these makes a waiting worker stale.
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


class WarmPool:
    """One warm shim and worker, waiting for the next launch (see the module docstring)."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.enabled = enabled()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._stamp = ""
        self._ready = False
        self._count = 0
        self._wanted = False  # set by the first launch
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S
        self._next_stale_check = 0.0
        self._ending: list[subprocess.Popen[bytes]] = []  # discarded shims, not yet reaped
        # Pools of daemons that are gone ended with them; their directories did not.
        shutil.rmtree(paths.warm, ignore_errors=True)

    def take(self, rundir: RunDir) -> subprocess.Popen[bytes] | None:
        """Hand ``rundir`` (launch.json written) to the waiting shim and return it.

        None when no pool is ready: the caller starts the run cold. It never waits
        for a pool to get ready; only for a ready shim's ``took`` (a millisecond,
        at most TOOK_TIMEOUT_S from a shim that hangs, which is then killed).
        """
        self._wanted = True
        if not self.enabled:
            return None
        proc = self._waiting()
        if proc is None or code_stamp() != self._stamp:
            self.tick(force_stale_check=proc is not None)
            return None
        if not self._hand_over(proc, rundir):
            self._kill(proc)
            self.tick()
            return None
        log.info("run in %s handed to warm shim %d", rundir.path.name, proc.pid)
        self._proc = None  # the run's shim now: the run's LiveRun reaps it
        self._remove_dir()
        self._spawn()
        return proc

    def _hand_over(self, proc: subprocess.Popen[bytes], rundir: RunDir) -> bool:
        """Write the run dir to the shim and read its ``took``; False if it is not coming.

        Without the answer a shim that was dying (a SIGKILL on its way) could take
        the line with it, and the run would wait for a worker that never comes.
        """
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{rundir.path}\n".encode())
            proc.stdin.close()
            answered, _, _ = select.select([proc.stdout], [], [], TOOK_TIMEOUT_S)
            took = os.read(proc.stdout.fileno(), len(TOOK)) if answered else b""
        except OSError:  # it died since _waiting looked
            return False
        proc.stdout.close()
        return took == TOOK

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """A shim that did not take its run: it and its worker go, so neither starts it."""
        with contextlib.suppress(OSError):
            proc.kill()
        info = read_json(self._dir / "ready.json") if self._dir is not None else None
        if isinstance(info, dict):
            with contextlib.suppress(OSError, ValueError, TypeError):
                os.killpg(int(info["pid"]), signal.SIGKILL)
        self._discard()

    def tick(self, force_stale_check: bool = False) -> None:
        """Replace a pool that died or is stale, and start one where none waits."""
        self._ending = [proc for proc in self._ending if proc.poll() is None]
        if not (self.enabled and self._wanted):
            return
        now = time.monotonic()
        if self._proc is not None and self._proc.poll() is not None:
            self._died()
        elif self._waiting() is not None and (force_stale_check or now >= self._next_stale_check):
            self._next_stale_check = now + STALE_CHECK_S
            if code_stamp() != self._stamp:
                log.info("warm worker is stale (code changed); starting a new one")
                self._discard()
        if self._proc is None and now >= self._retry_at:
            self._spawn()

    def close(self) -> None:
        """End the waiting shim and worker (the daemon stops)."""
        if self._proc is not None:
            self._discard()

    def _waiting(self) -> subprocess.Popen[bytes] | None:
        """The pool's shim if it is alive and its worker has imported torch."""
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
            with open(pool_dir / "shim.log", "ab") as shim_log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "engine.run.warm_shim", str(pool_dir)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=shim_log,
                    start_new_session=True,
                    close_fds=True,
                    env=child_env(),
                    cwd=pool_dir,
                )
        except OSError as exc:  # a full disk, too many processes: runs start cold
            log.warning("cannot start a warm worker: %s", exc)
            self._retry_later()
            return
        self._dir, self._ready, self._stamp = pool_dir, False, code_stamp()
        self._next_stale_check = time.monotonic() + STALE_CHECK_S

    def _died(self) -> None:
        """The pool ended untaken: say why once, and retry later if it never got ready."""
        assert self._proc is not None and self._dir is not None
        if not self._ready and not (self._dir / "ready.json").exists():
            tail = ""
            with contextlib.suppress(OSError):
                tail = (self._dir / "worker.log").read_text(errors="replace")[-2000:]
            log.warning("warm worker ended before it was ready (exit %s): %s",
                        self._proc.returncode, tail.strip() or "no output")
            self._retry_later()
        self._proc = None
        self._remove_dir()

    def _retry_later(self) -> None:
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)

    def _discard(self) -> None:
        """Close the shim's stdin: it kills its worker and exits (reaped by a later tick).

        Not waited for: a shim still waiting for its worker's import sees the EOF
        only once that is done, and the daemon must not block meanwhile.
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
        self._dir, self._ready = None, False
