"""``traintop.init``: a script started by the user becomes a run the daemon follows.

Three cases:

* Started by a shim (a fork or resume of an attached run): ``TRAINTOP_RUN_DIR``
  names the run directory; its ``launch.json`` says what to continue, like
  for ``engine.run.worker``, and the shim records the exit.
* Started by the user, daemon reachable (started on demand): an ``attach``
  request registers the process and returns its run directory.
* No daemon reachable: the run directory is made here, with an
  ``offline.json`` marker; a daemon that starts later imports it.

In the last two there is no shim, so the process records its own end in
``exit.json`` (atexit, excepthook, SIGTERM, release). Monitoring never stops
training: every step that talks to the daemon is bounded and any failure
falls back to offline, and a run directory that cannot be made at all falls
back to a temporary one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.common.run_env import run_env
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, tag_problem
from engine.run.run_api import Run, _exit
from engine.rundir.paths import (
    RUN_DIR_ENV,
    RunDir,
    StatePaths,
    private_opener,
    read_json,
    state_home,
    write_json_atomic,
)
from engine.rundir.state_dir import check_state_dir, ensure_private_dir

# Set to 1 to never start a daemon from a script (an existing one is still used).
NO_AUTOSTART_ENV = "TRAINTOP_NO_AUTOSTART"
# The longest init waits for the daemon (starting it included) before going offline.
ATTACH_TIMEOUT = 10.0


class AttachedRun(Run):
    """A Run in a process no shim started: it writes its own ``exit.json``."""

    def __init__(self, run_dir: Path, launch: Mapping[str, Any],
                 config: Mapping[str, Any] | None = None) -> None:
        super().__init__(run_dir, launch, config)
        self._exit_written = False

    def record_exit(self, returncode: int) -> None:
        """Write exit.json once, for this generation (never from a forked child)."""
        if self._exit_written or os.getpid() != self._pid:
            return
        self._exit_written = True
        with contextlib.suppress(OSError):
            write_json_atomic(
                RunDir(self.dir).exit,
                {"generation": self.generation, "returncode": returncode, "time": time.time()},
            )

    def _leave(self, code: int) -> None:
        self.record_exit(code)
        _exit(code)


def init(config: Mapping[str, Any] | None = None, name: str | None = None,
         device: str | None = None, divergence: bool | float = True,
         tags: Sequence[str] = ()) -> Run:
    """Make this process a traintop run and return its :class:`Run`.

    ``config`` is the run's hyper-parameters (a fork overrides some of them:
    read them back from ``run.config``); ``name`` its name (made unique by the
    daemon); ``device`` what the table shows (default: ``config["device"]`` or
    cpu); ``divergence`` the loss watch: True pauses the run when its loss turns
    NaN or leaps above 10x its EMA, a number above 1 sets that multiple, False
    never pauses it; ``tags`` words to tag the run with (``traintop ls -t TAG``).
    Then ``run.track(model=..., optimizer=...)`` and ``run.steps(total)``.
    """
    if isinstance(divergence, bool):
        factor: float | None = DEFAULT_DIVERGENCE_FACTOR if divergence else None
    elif isinstance(divergence, int | float) and divergence > 1:
        factor = float(divergence)
    else:
        raise ValueError(f"divergence must be True, False or a number above 1, not {divergence!r}")
    if isinstance(tags, str):  # a lone word would be taken letter by letter
        raise ValueError(f"tags must be a list of words, not the string {tags!r}")
    problems = [p for p in map(tag_problem, tags) if p is not None]
    if problems:
        raise ValueError(problems[0])
    user_config = dict(config or {})
    run_dir = os.environ.pop(RUN_DIR_ENV, None)  # not for processes this one starts
    if run_dir:
        launch = read_json(RunDir(Path(run_dir)).launch)
        if isinstance(launch, dict):
            run = Run(Path(run_dir), launch, {**user_config, **(launch.get("config") or {})})
            _install(run, record_exit=False)
            return run
    device = device or (user_config.get("device") if isinstance(user_config.get("device"), str)
                        else None) or "cpu"
    attached = _attach(user_config, name, device, factor, list(tags)) or _offline(
        user_config, name, device, factor, list(tags)
    )
    _install(attached, record_exit=True)
    return attached


def _command() -> list[str]:
    """How to start this process again: the interpreter and its original arguments."""
    return [sys.executable, *sys.orig_argv[1:]]


def _attach(
    config: dict[str, Any], name: str | None, device: str, divergence: float | None,
    tags: list[str],
) -> AttachedRun | None:
    """Register with the daemon; None if it cannot be reached in time or refuses."""
    reply: dict[str, Any] = {}

    def ask() -> None:
        from engine.client.client import Client, EngineError

        try:
            autostart = os.environ.get(NO_AUTOSTART_ENV, "") in ("", "0")
            with Client().connect(autostart=autostart, timeout=ATTACH_TIMEOUT) as client:
                reply.update(client.call("attach", name=name, config=config, cwd=os.getcwd(),
                                         argv=_command(), pid=os.getpid(), device=device,
                                         env=run_env(os.environ),
                                         divergence_factor=divergence,
                                         divergence_pause=divergence is not None,
                                         tags=tags))
        except EngineError as exc:
            reply["error"], reply["refused"] = exc.message, True
        except Exception as exc:
            reply["error"] = str(exc)

    thread = threading.Thread(target=ask, name="traintop-attach", daemon=True)
    thread.start()
    thread.join(ATTACH_TIMEOUT + 2.0)
    if thread.is_alive() or "error" in reply or "id" not in reply:
        why = reply.get("error") or "no answer in time"
        said = "the engine refused it" if reply.get("refused") else "no engine"
        print(f"traintop: {said} ({why}); this run is recorded offline", file=sys.stderr)
        return None
    launch = {"run_id": reply["id"], "name": reply["name"], "generation": 1,
              "device": reply.get("device"), "control_offset": reply.get("control_offset", 0)}
    try:
        return AttachedRun(Path(reply["dir"]), launch, config)
    except OSError as exc:
        print(f"traintop: cannot use the run directory ({exc}); recording offline",
              file=sys.stderr)
        return None


def _offline(
    config: dict[str, Any], name: str | None, device: str, divergence: float | None,
    tags: list[str],
) -> AttachedRun:
    """A run directory of our own, which a daemon imports when it next runs."""
    from engine.common.runs import new_run_id

    run_id = new_run_id()
    launch = {"run_id": run_id, "name": name, "generation": 1, "device": device,
              "control_offset": 0}
    try:
        paths = StatePaths(state_home())
        check_state_dir(paths)  # another user's tree: train on, record nothing there
        runs = ensure_private_dir(paths.runs)
        while True:
            rundir = RunDir(runs / run_id)
            try:
                rundir.path.mkdir(mode=0o700)  # this script keeps its umask: say the mode
                break
            except FileExistsError:
                run_id = launch["run_id"] = new_run_id()
        run = AttachedRun(rundir.path, launch, config)
        import psutil

        write_json_atomic(rundir.offline, {
            "name": name, "config": config, "argv": _command(), "cwd": os.getcwd(),
            "device": device, "pid": os.getpid(),
            "pid_start": psutil.Process().create_time(), "created": time.time(),
            "env": run_env(os.environ),  # what a fork re-runs this script with
            "divergence_factor": divergence, "tags": tags,
        })
        return run
    except Exception as exc:  # no state directory at all: train anyway, on a scratch dir
        print(f"traintop: cannot record this run ({exc}); training unmonitored",
              file=sys.stderr)
        return AttachedRun(Path(tempfile.mkdtemp(prefix="traintop-")), launch, config)


def _install(run: Run, record_exit: bool) -> None:
    """Signal handlers, and recording how the process ends (its exit.json too if no shim)."""
    with contextlib.suppress(ValueError):  # not the main thread: no control by signal
        run.install_signal_handlers()
    failed: list[BaseException] = []
    previous = sys.excepthook

    def on_exception(kind: type[BaseException], exc: BaseException,
                     tb: TracebackType | None) -> None:
        failed.append(exc)
        with contextlib.suppress(Exception):
            run.record_error(exc)
            if record_exit:  # no shim captures stderr: keep the traceback for the run's tail
                with open(RunDir(run.dir).stderr, "a", encoding="utf-8",
                          opener=private_opener) as err:
                    traceback.print_exception(kind, exc, tb, file=err)
        previous(kind, exc, tb)

    def at_exit() -> None:
        # Interpreter shutdown resets Python's signal handlers, and SIGUSR1's default
        # action kills: a late nudge (a fork asking for a checkpoint) must not.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        if not failed:
            with contextlib.suppress(Exception):
                run.mark_finished()
        if record_exit and isinstance(run, AttachedRun):
            run.record_exit(1 if failed else 0)

    sys.excepthook = on_exception
    atexit.register(at_exit)
