"""Where traintop keeps its state, and the files of one run directory.

The run directory is the contract between the daemon, the per-run shim and
the worker. Every file in it has exactly one writer:

``launch.json``   daemon: what to run (workload, config, device, resume_from,
                  generation, control_offset, created, parent_id, fork_step, the
                  run's ``env``, see ``engine.common.run_env``; for ``traintop run`` also
                  the ``command``); rewritten before each (re)start. For an
                  attached run, written once when it attaches (a rebuild reads it).
``worker.json``   shim: pid, pgid and create_time of the worker it started.
                  (daemon, for a process that attached itself: ``"attached": true``).
``exit.json``     shim: the worker's return code, written atomically on exit
                  (an attached process writes its own, see ``traintop``).
``offline.json``  ``traintop.init`` when no daemon answered: what the daemon
                  needs to import the run later (see ``engine.server.attach``).
``spool.jsonl``   worker: append-only records (metrics batches, state changes,
                  checkpoints). The daemon tails it from a stored byte offset,
                  so nothing logged while the daemon is down is lost. For a
                  wrapped command the shim writes it (``engine.run.wrapped``). A
                  line the daemon cannot use is skipped and counted on the run
                  (``engine.rundir.spool_records``).
``control.jsonl`` daemon: append-only commands (pause, resume, release,
                  checkpoint); the worker is nudged with SIGUSR1 and reads new
                  lines at its next step boundary.
``startup.json``  worker: when this generation's start-up phases ended (handover,
                  imports, CUDA, checkpoint load, first step), for ``bench/fork_latency.py``.
``stdout.log``, ``stderr.log``  the worker's output, appended per generation.
``checkpoints/``  atomic checkpoints written by the worker.
``annotations.json``  daemon: the run's tags and note, rewritten atomically when the
                  user changes them (the store has them too; a rebuild reads this).

Beside ``runs/``, ``warm/<pool>/`` is the daemon's fork server
(``engine.server.warm_pool``): ``ready.json`` (its pid, once torch is imported) and
``worker.log`` (its output). ``cache/`` holds the built-in workloads' prepared data
(``engine.run.data_cache``), each file written once, atomically, by a worker.
``trash/`` holds the directories of runs being removed (``engine.server.removal``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
# Set by the shim for a traintop.init script it re-runs (a fork, a resume): the run dir.
RUN_DIR_ENV = "TRAINTOP_RUN_DIR"


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``extra``, with this package
    importable.

    The daemon, shims and workers are started as ``python -m engine...``; the
    package's root goes first on PYTHONPATH so they run this very copy of it.
    """
    env = {**(os.environ if base is None else base), **extra}
    paths = [_PROJECT_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def state_home() -> Path:
    """The state directory: ``$TRAINTOP_HOME`` or ``~/.local/share/traintop``."""
    env = os.environ.get("TRAINTOP_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "traintop"


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for ``open()`` that creates a file 0600, whatever the umask.

    For files made in the state tree by processes that keep the user's umask:
    the CLI, and scripts that called ``traintop.init``.
    """
    return os.open(path, flags, 0o600)


@dataclass(frozen=True)
class StatePaths:
    """The files of one state directory."""

    home: Path

    @property
    def socket(self) -> Path:
        return self.home / "engine.sock"

    @property
    def lock(self) -> Path:
        return self.home / "engine.pid"

    @property
    def store(self) -> Path:
        return self.home / "store.sqlite"

    @property
    def queues(self) -> Path:
        """The queues' settings, copied from the store at each change, for ``engine rebuild``."""
        return self.home / "queues.json"

    @property
    def daemon_log(self) -> Path:
        return self.home / "engine.log"

    @property
    def start_error(self) -> Path:
        """Why the last daemon could not start (one line), for the client that started it."""
        return self.home / "engine.error"

    @property
    def upgrading(self) -> Path:
        """Present while a starting daemon migrates the store: "<pid> <what it does>"."""
        return self.home / "engine.upgrading"

    @property
    def tui_view(self) -> Path:
        """What the TUI showed last (selection, chart, sort, filter, marks, pins), for its
        next start; the TUI's own file, 0600, never read by the daemon."""
        return self.home / "tui.json"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def warm(self) -> Path:
        """The warm pool's directories, one per fork server (see the module docstring)."""
        return self.home / "warm"

    @property
    def trash(self) -> Path:
        """The directories of runs being removed (``engine.server.removal``), out of ``runs``."""
        return self.home / "trash"

    @property
    def cache(self) -> Path:
        """Prepared data of the built-in workloads, by workload and the config it depends on."""
        return self.home / "cache"

    def run_dir(self, run_id: str) -> RunDir:
        return RunDir(self.runs / run_id)


@dataclass(frozen=True)
class RunDir:
    """The files of one run (see the module docstring for who writes what)."""

    path: Path

    @property
    def launch(self) -> Path:
        return self.path / "launch.json"

    @property
    def worker(self) -> Path:
        return self.path / "worker.json"

    @property
    def exit(self) -> Path:
        return self.path / "exit.json"

    @property
    def spool(self) -> Path:
        return self.path / "spool.jsonl"

    @property
    def control(self) -> Path:
        return self.path / "control.jsonl"

    @property
    def stdout(self) -> Path:
        return self.path / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.path / "stderr.log"

    @property
    def output_order(self) -> Path:
        """Which stream was written when (daemon; see ``engine.server.output_order``)."""
        return self.path / "output.order"

    @property
    def offline(self) -> Path:
        return self.path / "offline.json"

    @property
    def annotations(self) -> Path:
        """The run's tags and note as the user last set them (daemon; kept for a rebuild)."""
        return self.path / "annotations.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def startup(self) -> Path:
        return self.path / "startup.json"

    @property
    def state(self) -> StatePaths:
        """The state directory this run directory is in (``<home>/runs/<id>``)."""
        return StatePaths(self.path.parent.parent)


def temporary_for(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place.

    The writer's pid is in the name, so a temporary whose writer is gone can be
    told from one being written (see :func:`remove_stray_temporaries`).
    """
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


_TEMPORARY = re.compile(r"\..+\.(\d+)\.tmp")


def remove_stray_temporaries(directory: Path) -> list[Path]:
    """Delete the temporaries in ``directory`` whose writer is no longer alive.

    A process killed between writing a temporary and renaming it (SIGKILL in a
    checkpoint, a full disk) leaves it behind; nobody would ever finish it.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not is_stray_temporary(name):
            continue
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
            removed.append(directory / name)
    return removed


def wal_of(database: Path) -> Path:
    """The write-ahead log SQLite keeps beside ``database`` (WAL mode)."""
    return Path(f"{database}-wal")


def database_bytes(database: Path) -> int:
    """The bytes of an SQLite database's main file and its log (those that exist)."""
    return sum(p.stat().st_size for p in (database, wal_of(database)) if p.exists())


def sqlite_files(database: Path) -> list[Path]:
    """Every file of an SQLite database in WAL mode: itself, its log and its shared index."""
    return [database, wal_of(database), Path(f"{database}-shm")]


def is_stray_temporary(name: str) -> bool:
    """Is the file ``name`` a temporary (see ``temporary_for``) whose writer is gone?"""
    match = _TEMPORARY.fullmatch(name)
    return match is not None and not process_alive(int(match.group(1)))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive: not ours to judge)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def write_json_atomic(path: Path, data: Any, sync: bool = True) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never half;
    ``sync``: on the disk before it replaces the old (an fsync, ~2 ms), else as soon as
    the kernel writes it (what a crash of the machine may lose is only a file's news)."""
    tmp = temporary_for(path)
    try:
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
            json.dump(data, f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


def read_json(path: str | Path) -> Any:
    """Read a JSON file; ``None`` if it does not exist or is not (yet) valid."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
