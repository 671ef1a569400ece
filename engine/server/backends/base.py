"""The contract every kind of run meets: how a generation starts, stops and ends.

The supervisor follows every run the same way (it reads the files a run writes,
see ``engine.rundir.paths``); where runs differ, it asks the run's backend, which
``backend_for`` picks from the stored run row. A new kind of run (a remote host,
a Ray task) is one more module here and one more line in ``backend_for``.

Backends keep no state: what they know of a run is its stored row, its run
directory and the ``Process`` the supervisor follows, so one instance serves
every run of its kind, across daemon restarts.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from engine.rundir.paths import RunDir

# What a run row's ``kind`` says, for display only: clients decide from ``refusals``.
RunKind = Literal["train", "attached", "wrapped", "imported"]
# What a backend may be unable to do: fork, release (pause and free its memory),
# restart (go on from a failed run's last complete checkpoint) and retry (be launched
# again by the engine after a failure, as ``--retries`` asks).
Refusable = Literal["fork", "release", "restart", "retry"]
# The refusals a run row carries to clients, so that they can grey out an action.
SHOWN_REFUSALS: tuple[Refusable, ...] = ("fork", "release")


class Process(Protocol):
    """What a backend sees of the generation the supervisor follows (its ``LiveRun``)."""

    rundir: RunDir
    generation: int
    pid: int | None
    pgid: int | None
    pid_start: float | None


class Host(Protocol):
    """What the request handlers do for a backend: the two ways a live run is steered."""

    def send_control(self, run: dict[str, Any], cmd: str, request: str | None = None) -> None:
        """Append a command to the run's ``control.jsonl`` and nudge its worker."""

    def stop_process(self, run: dict[str, Any], pause: bool) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) the run's process and record the state."""


class ShimProcess(Protocol):
    """The local process that watches a generation, as the daemon follows it: a shim
    it started (a ``Popen``) or one the warm pool started (``warm_pool.PooledShim``)."""

    def poll(self) -> int | None:
        """Its exit code once it has ended (and reap it if it is ours), else None."""

    @property
    def returncode(self) -> int | None:
        """What ``poll`` last found."""


# Starts a generation cold: its shim, a new interpreter that starts the worker.
ColdStart = Callable[[], ShimProcess]


class WarmStart(Protocol):
    """The daemon's warm pool as a launch sees it (``engine.server.warm_pool``)."""

    def start(self, rundir: RunDir, cold: ColdStart) -> ShimProcess:
        """Start the generation whose launch.json is written: forked warm by the pool, or
        by ``cold`` (now, or a few seconds later if the pool is about to be ready)."""


@dataclass(frozen=True)
class KillStep:
    """One rung of a kill's signal ladder: ``signals`` sent ``after`` seconds."""

    after: float
    signals: tuple[signal.Signals, ...]


class RunBackend(ABC):
    """How one kind of run is started, steered, signalled and judged alive.

    Contract, in the order a run meets it:

    - ``launch`` starts a new generation from ``record`` (written to launch.json
      with what this kind adds) and returns the local process that watches it,
      or None when none does. Whatever it starts must, like the shim, write
      worker.json (pid, pgid, start time), the spool and exit.json. A kind whose
      worker is ``engine.run.worker`` may have ``warm`` start the generation (a
      fork server with torch imported), giving it the cold start to fall back on.
    - ``pause`` and ``resume`` steer a live run; ``pause`` with ``release`` also
      frees its memory. Either acts through ``host`` and may raise ``ActionError``.
    - ``kill_ladder`` says which signals a kill sends and when; ``signal``
      delivers one to the process (its group, or the process alone).
    - ``alive`` says whether the followed process is still the one started
      (never the pid alone: pids are reused). ``exit_timeout`` is how long a
      process that is gone may take to leave its exit.json before the run is
      called lost. A restarted daemon re-adopts a run from its stored pid,
      pgid and start time; ``alive`` and ``signal`` need nothing more.
    - ``refusal`` says, in one line for a person, why this kind cannot do an
      action (fork, release, restart), or None when it can.
    - ``fork_defaults`` is the config a fork's overrides are checked against.
    - ``reads_control`` says whether the process reads ``control.jsonl`` (the Run
      API does): only then may ``Host.send_control`` be used on it, since its
      SIGUSR1 nudge would end any other program.
    """

    kind: ClassVar[RunKind]
    reads_control: ClassVar[bool]

    @abstractmethod
    def launch(
        self, rundir: RunDir, record: dict[str, Any], warm: WarmStart
    ) -> ShimProcess | None:
        """Write launch.json from ``record`` and start the generation it describes."""

    @abstractmethod
    def pause(self, host: Host, run: dict[str, Any], release: bool) -> None:
        """Pause a live run (``release``: and free its memory, to resume from a checkpoint)."""

    @abstractmethod
    def resume(self, host: Host, run: dict[str, Any]) -> None:
        """Let a paused run (its memory kept) go on."""

    @abstractmethod
    def kill_ladder(self, grace: float) -> tuple[KillStep, ...]:
        """The signals a kill sends, first at once, the last (SIGKILL) once all grace is up."""

    @abstractmethod
    def signal(self, proc: Process, sig: signal.Signals) -> None:
        """Send ``sig`` to the run's process; nothing if it is gone or not known yet."""

    def followed_reason(self, pid: int) -> str:
        """What the run's events say when the daemon takes up a process it did not start
        (a script that attached itself, with ``pid``)."""
        return f"attached: pid {pid}"

    @abstractmethod
    def alive(self, proc: Process) -> bool:
        """Is the followed process running and the very one that was started?"""

    @abstractmethod
    def exit_timeout(self, proc: Process) -> float:
        """Seconds a gone process may take to leave its exit status before it is lost."""

    @abstractmethod
    def refusal(self, action: Refusable, run_id: str) -> str | None:
        """Why this kind of run cannot do ``action`` (one line), or None if it can."""

    @abstractmethod
    def fork_defaults(self, run: dict[str, Any]) -> dict[str, Any]:
        """The config a fork's overrides are checked against (empty: any key goes)."""
