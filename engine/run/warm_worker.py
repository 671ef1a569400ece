"""The fork server of the daemon's warm pool: torch imported once, a worker forked per run.

``python -m engine.run.worker --zygote POOL_DIR`` is started by the daemon's warm pool
(``engine.server.warm_pool``) in its own session, with a pipe from the daemon as
stdin and one back as stdout. It imports torch and what every built-in workload
needs, writes ``ready.json`` in POOL_DIR and then serves launches for as long as the
daemon lives, each line on stdin a run directory whose launch.json is written:

- it answers ``cold`` when it cannot serve that run (a command, a script, an
  environment that differs in what is read at start-up, a CUDA run when CUDA would
  not work in a forked child): the daemon starts that one cold;
- else it answers ``took`` (from then on the run is its to start: the daemon never
  starts it again), forks, and answers ``pid N``, N the run's shim. The forked child
  makes its own session and forks the worker, which returns from :func:`serve_forks`
  into the worker's ``main`` with the run's environment, working directory and
  output files, as a cold worker would have them; the child then becomes the run's
  shim by exec (``engine.run.shim --adopt``), a small fresh interpreter that waits
  for the worker as its parent, exactly as a cold shim does.

EOF on stdin (the daemon stopped or died) ends it; the runs it forked are in their
own sessions and do not notice.

Fork-safety. The server never initialises CUDA (PyTorch's NVML-based checks are
asked for, so a device count does not start the driver); a probe child checks that
a fork could still use CUDA, and CUDA runs are started cold if not. It never runs a
parallel region either (libgomp's thread pool does not survive a fork: a child
hangs at its first parallel op), which :func:`_threads` checks. ``gc.freeze`` keeps
the children's garbage collections from copying the server's objects.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Read at interpreter or library start, so the fork server must already have them right.
STARTUP_PREFIXES = (
    "PYTHON", "LD_", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH_", "PYTORCH_",
)
# torch.cuda.is_available()/device_count() by NVML, not the CUDA driver: a server that
# started the driver could not hand CUDA to a forked child. Not a run's variable: it
# is set here only, and each child gets its run's environment.
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
TOOK = b"took\n"
COLD = b"cold\n"


def startup_env_differs(waiting: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The variables read at start-up whose value differs between two environments."""
    names = {k for k in (*waiting, *wanted) if k.startswith(STARTUP_PREFIXES)} - {NVML_CHECK}
    return sorted(k for k in names if waiting.get(k) != wanted.get(k))


def serve_forks(pool: Path) -> Path | None:
    """Serve launches until EOF (returns None); in a forked worker, its run directory."""
    os.environ[NVML_CHECK] = "1"
    waited_in = os.getcwd()  # the pool's directory: first on sys.path (python -m)
    # What every built-in workload and checkpoint needs: the slow part of a cold start.
    import torch  # noqa: F401

    import engine.run.checkpoint
    import engine.run.shim
    import engine.run.workloads.charlm
    import engine.run.workloads.synthetic  # noqa: F401
    from engine.rundir.paths import write_json_atomic

    imported = _threads()
    _first_optimizer_step()
    if _threads() != imported:
        print(f"traintop warm pool: torch started threads ({imported} -> {_threads()}); "
              "a fork of this process would not be safe", file=sys.stderr)
        return None
    cuda_forks = _cuda_survives_fork()
    waiting_env = dict(os.environ)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the shims it forks are reaped for it
    gc.freeze()
    write_json_atomic(pool / "ready.json", {"pid": os.getpid(), "cuda": cuda_forks})
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return None
        run_dir = Path(line.decode().strip())
        handover = _handover(run_dir, waiting_env, cuda_forks)
        if handover is None:
            os.write(1, COLD)
            continue
        os.write(1, TOOK)  # before the fork: a daemon that hears nothing starts it cold
        if _fork_run(run_dir):
            _become(run_dir, handover["env"], handover["cwd"], waited_in)
            return run_dir


def _threads() -> int:
    """How many threads this process has (Linux; 1 where it cannot be read)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _first_optimizer_step() -> None:
    """Step each optimizer the built-in workloads use once, on a throwaway parameter.

    torch's first optimizer imports torch._dynamo and sympy: about as long as
    importing torch itself. Nothing random is drawn, so no run's numbers change; the
    gradient is set, not computed (autograd's engine would count CUDA devices).
    """
    import torch

    param = torch.nn.Parameter(torch.zeros(4))
    for make in (torch.optim.SGD, torch.optim.AdamW):
        optimizer = make([param], lr=0.1)
        param.grad = torch.ones(4)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _cuda_survives_fork() -> bool:
    """Whether a child forked now could use CUDA: a probe child asks the CUDA runtime
    for the GPUs NVML sees (no context made, no GPU memory taken)."""
    import torch

    if not torch.cuda.is_available():  # asked of NVML here; no GPU, nothing to lose
        return True
    pid = os.fork()
    if pid == 0:  # the probe: nothing but the answer
        try:
            ok = not torch.cuda._is_in_bad_fork() and torch._C._cuda_getDeviceCount() > 0
        except Exception:  # the driver refused: that is the answer
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _handover(run_dir: Path, waiting: Mapping[str, str],
              cuda_forks: bool) -> dict[str, Any] | None:
    """The run's environment and directory if a forked worker can start it, else None."""
    from engine.run.shim import worker_env
    from engine.rundir.paths import RunDir, read_json

    launch = read_json(RunDir(run_dir).launch)
    if not isinstance(launch, dict) or launch.get("command") or launch.get("argv"):
        return None  # the cold shim says what is wrong with it, or runs what it names
    if not cuda_forks and str(launch.get("device", "cpu")) != "cpu":
        return None
    env = worker_env(launch)
    differs = startup_env_differs(waiting, env)
    if differs:
        with contextlib.suppress(OSError), open(run_dir / "shim.log", "a") as log:
            print(f"traintop shim: started cold: the run sets {', '.join(differs)}", file=log)
        return None
    return {"env": env, "cwd": launch.get("cwd") or str(run_dir)}


def _fork_run(run_dir: Path) -> bool:
    """Fork the run's shim and worker; True in the worker, False back in the server.

    The server answers ``pid N`` (the shim) or ``pid 0`` (the fork failed: its reason is
    the run's exit, as a cold shim that cannot start a worker records it).
    """
    try:
        shim = os.fork()
    except OSError as exc:
        _failed_start(run_dir, f"cannot fork the worker: {exc}")
        os.write(1, b"pid 0\n")
        return False
    if shim:
        os.write(1, f"pid {shim}\n".encode())
        return False
    worker = 0
    try:  # the shim to be: never back into the server's loop
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # it waits for its worker
        os.setsid()
        worker = os.fork()
        if worker == 0:
            os.setpgid(0, 0)  # its own group, as a cold shim starts a worker
            # A cold worker inherits a shim's ignored signals until it sets its handlers.
            for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                signal.signal(signum, signal.SIG_IGN)
            return True
        with contextlib.suppress(OSError):  # as the child does: whichever runs first
            os.setpgid(worker, worker)
        _exec_shim(run_dir, worker)
    except BaseException as exc:  # any way out of here would be the server's loop
        with contextlib.suppress(BaseException):
            if worker > 0:  # no shim will wait for it: it goes
                os.killpg(worker, signal.SIGKILL)
            _failed_start(run_dir, f"cannot start the shim: {exc}")
    os._exit(127)


def _exec_shim(run_dir: Path, worker: int) -> None:
    """Become the run's shim: output to its shim.log, a fresh interpreter that adopts
    ``worker`` (our child, so it can wait for it)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    log = os.open(run_dir / "shim.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.chdir(run_dir)
    os.execv(sys.executable, [sys.executable, "-m", "engine.run.shim", "--adopt",
                              str(worker), str(run_dir)])


def _failed_start(run_dir: Path, message: str) -> None:
    from engine.run.shim import fail_launch
    from engine.rundir.paths import RunDir

    fail_launch(RunDir(run_dir), message)


def _become(run_dir: Path, env: dict[str, str], cwd: str, waited_in: str) -> None:
    """Take on the run's output files, environment, working directory and arguments."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # Appended like a cold worker's (the shim opens them so); this also drops the
    # server's pipes to the daemon.
    for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
        with open(run_dir / name, "ab") as out:
            os.dup2(out.fileno(), fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # ``python -m`` put the directory it started in first on sys.path: a cold
    # worker would have the run's directory there.
    if sys.path and sys.path[0] == waited_in:
        sys.path[0] = os.getcwd()
    sys.argv[1:] = [str(run_dir)]
    with contextlib.suppress(Exception):  # a title is never worth a run
        _retitle([sys.executable, "-m", "engine.run.worker", str(run_dir)])


def _retitle(args: list[str]) -> bool:
    """Show ``args`` as this process's command line (ps, htop, nvitop), as a cold worker's
    reads: written over the server's own (Linux), which is longer; False if it cannot be.

    The kernel reads a command line from the process's memory, between the addresses
    /proc/self/stat gives; it is written there only if what is there is what
    /proc/self/cmdline says (the right place), and the rest padded with NULs.
    """
    import ctypes

    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # after the name, which may hold spaces
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49
    with open("/proc/self/cmdline", "rb") as f:
        shown = f.read()
    new = b"\0".join(arg.encode() for arg in args) + b"\0"
    if (end - start != len(shown) or len(new) > len(shown)
            or ctypes.string_at(start, len(shown)) != shown):
        return False
    ctypes.memmove(start, new.ljust(len(shown), b"\0"), len(shown))
    return True


