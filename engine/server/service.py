"""What the daemon does for each request: validate, then act through the supervisor.

Every check that can fail on user input happens before anything is written,
so a refused request changes nothing stored.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import __version__
from engine.common.config import INT64_MAX, INT64_MIN, ConfigError, apply_overrides, step_total
from engine.common.format import format_bytes
from engine.common.output_metrics import PatternError, compile_loss_pattern
from engine.common.protocol import MAX_BUCKETS, MAX_TAIL
from engine.common.runs import (
    DEFAULT_KILL_GRACE,
    WRAPPED_WORKLOAD,
    ActionError,
    RunState,
    check_action,
    check_wrapped_action,
    name_from,
    name_problem,
    new_run_id,
    unique_name,
)
from engine.run.workloads.registry import BUILTIN_DEFAULTS, WorkloadError, workload_defaults
from engine.rundir.checkpoint_files import latest_complete
from engine.rundir.disk_space import free_bytes, is_full, out_of_space
from engine.rundir.paths import RunDir
from engine.server.attach import AttachError, attach_argv, create_attached_run, process_start
from engine.server.devices import DeviceError, choose_device, list_gpus
from engine.server.store import Store
from engine.server.supervisor import Supervisor
from engine.server.views import AXES, EmaCache, series_view, tail_ema

LOG_CHUNK = 256 * 1024
# Points per 'metrics' reply at most (the store also bounds a page's bytes).
METRICS_PAGE = 25_000
# Points per columns reply: ~45 bytes each in JSON (at most ~70: 2.8 MB, under the cap).
COLUMNS_PAGE = 40_000
# A 'list_runs' page: at most this many runs and about this many bytes of JSON.
RUNS_PAGE = 200
RUNS_PAGE_BYTES = 1024 * 1024
# The latest state changes a 'get_run' reply carries (a run paused a million times...).
SHOWN_EVENTS = 200
# Requests that only read: answered on reader threads, never on the event loop.
READS = frozenset(
    {"ping", "status", "list_runs", "get_run", "metrics", "series", "read_log", "workloads"}
)


class RequestError(Exception):
    """A refused request: ``code`` for programs, ``message`` (one line) for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _param(params: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    value = params.get(name)
    if value is None:  # null is the same as leaving the parameter out
        if default is ...:
            raise RequestError("bad_request", f"missing parameter {name!r}")
        return default
    # bool is an int to isinstance, but true is no step count or offset.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError("bad_request", f"parameter {name!r} must be {kind.__name__}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise RequestError("bad_request", f"parameter {name!r} is out of range")
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in items) and isinstance(value, list):
        raise RequestError("bad_request", f"parameter {name!r} must be a list of strings")
    # A NUL byte cannot be part of a path, an argument or a name; refuse it up front.
    if any(isinstance(v, str) and "\0" in v for v in items):
        raise RequestError("bad_request", f"parameter {name!r} contains a NUL character")
    return value


def _number(value: Any) -> bool:
    """A finite JSON number (not true/false)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _env(params: dict[str, Any]) -> dict[str, str] | None:
    """The ``env`` parameter: the environment a run gets (None: the daemon's own)."""
    env = params.get("env")
    if env is not None and not (
        isinstance(env, dict)
        and all(
            isinstance(k, str) and isinstance(v, str) and "\0" not in k + v
            for k, v in env.items()
        )
    ):
        raise RequestError("bad_request", "parameter 'env' must map strings to strings")
    return env


def _smoothing(params: dict[str, Any]) -> float | None:
    """The ``smoothing`` parameter: None, or an EMA weight in [0, 1)."""
    value = params.get("smoothing")
    if value is not None and not (_number(value) and 0 <= value < 1):
        raise RequestError("bad_request", "smoothing must be a number in [0, 1)")
    return None if value is None else float(value)


def _check_steps(config: dict[str, Any]) -> None:
    steps = config.get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps <= 0:
        raise RequestError("bad_config", f"steps={steps}: must be positive")


def resolve_spec(spec: str, cwd: str) -> str:
    """Make the file part of ``file.py[:function]`` absolute, relative to the client's cwd."""
    path, sep, function = spec.partition(":")
    if path.endswith(".py") or sep or "/" in path:
        return str(Path(cwd, path).resolve()) + (sep + function if sep else "")
    return spec


class Engine:
    """The request handlers, independent of the socket that carries them."""

    def __init__(self, store: Store, supervisor: Supervisor) -> None:
        self.store = store
        self.supervisor = supervisor
        self.started = time.time()
        self._local = threading.local()
        self.readers: list[Store] = []
        self.ema_cache = EmaCache()
        # Set by the daemon: true once it is stopping, so long reads give up.
        self.interrupted: Callable[[], bool] = lambda: False
        self.gpus = list_gpus()
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self.ping,
            "status": self.status,
            "list_runs": self.list_runs,
            "get_run": self.get_run,
            "start": self.start,
            "run_command": self.run_command,
            "pause": self.pause,
            "resume": self.resume,
            "fork": self.fork,
            "kill": self.kill,
            "metrics": self.metrics,
            "series": self.series,
            "read_log": self.read_log,
            "workloads": self.workloads,
            "attach": self.attach,
        }

    def read(self, method: str, params: dict[str, Any]) -> Any:
        """Answer a read-only request (on a reader thread) from one snapshot of the store."""
        with self.db.snapshot():
            return self.handle(method, params)

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        """Run one request; raises RequestError for anything the caller got wrong."""
        handler = self.handlers.get(method)
        if handler is None:
            raise RequestError("unknown_method", f"unknown method {method!r}")
        try:
            return handler(params)
        except ActionError as exc:
            raise RequestError("invalid_state", str(exc)) from None
        except (ConfigError, WorkloadError, DeviceError) as exc:
            raise RequestError("bad_config", str(exc)) from None

    def open_reader(self) -> None:
        """Give the calling thread a read-only store (a reader thread's initializer)."""
        reader = Store.reader(self.store.path)
        self._local.store = reader
        self.readers.append(reader)

    @property
    def db(self) -> Store:
        """The calling thread's store: its reader on a reader thread, else the writer."""
        store: Store | None = getattr(self._local, "store", None)
        return store if store is not None else self.store

    # -- lookups ------------------------------------------------------------

    def resolve(self, ref: Any) -> dict[str, Any]:
        """The run named ``ref``, or whose id starts with it; one clear error otherwise."""
        if not isinstance(ref, str) or not ref:
            raise RequestError("bad_request", "a run id or name is required")
        matches = self.db.match_runs(ref)
        if not matches:
            raise RequestError("not_found", f"no run matches {ref!r}")
        if len(matches) > 1:
            ids = ", ".join(m["id"] for m in matches[:5])
            raise RequestError("ambiguous", f"{ref!r} is ambiguous: it matches {ids}")
        return matches[0]

    def run_dir(self, run: dict[str, Any], action: str) -> RunDir:
        """The run's directory, or one clear error if it was deleted: control, checkpoints
        and logs all live there, so ``action`` (``pause``, ...) cannot be done without it."""
        rundir = self.supervisor.paths.run_dir(run["id"])
        if not rundir.path.is_dir():
            raise RequestError(
                "missing_dir",
                f"cannot {action} run {run['id']}: its directory {rundir.path} is missing "
                "(deleted?)",
            )
        return rundir

    def _checkpoint(self, run: dict[str, Any], action: str) -> str:
        """The run's last checkpoint file, which ``action`` starts from; one clear error
        if it has none or the file is gone."""
        self.run_dir(run, action)
        path = run["checkpoint"]
        if not path:
            raise RequestError(
                "invalid_state", f"run {run['id']} has no checkpoint (its workload tracks nothing)"
            )
        if not Path(path).is_file():
            raise RequestError(
                "missing_dir", f"cannot {action} run {run['id']}: its checkpoint {path} is missing"
            )
        return str(path)

    def summary(self, run: dict[str, Any]) -> dict[str, Any]:
        """A run as listed: its row, the latest value of each metric, and its condition."""
        return {
            **run,
            "last": self.db.last_values(run["id"]),
            "condition": self.supervisor.condition(run["id"]),
        }

    def resume_point(self, run: dict[str, Any]) -> tuple[int, Path] | None:
        """Where a failed run can go on from: its last complete checkpoint and its step."""
        if run["state"] != RunState.FAILED or run["workload"] == WRAPPED_WORKLOAD:
            return None
        return latest_complete(self.supervisor.paths.run_dir(run["id"]).checkpoints)

    def _need_resume_point(self, run: dict[str, Any]) -> tuple[int, Path]:
        if run["workload"] == WRAPPED_WORKLOAD:
            raise RequestError(
                "invalid_state",
                f"run {run['id']} wraps a command: it has no checkpoint to go on from",
            )
        point = self.resume_point(run)
        if point is None:
            raise RequestError(
                "invalid_state", f"run {run['id']} failed with no complete checkpoint to go on from"
            )
        return point

    def _check_room(self) -> None:
        """Refuse to make anything on a full disk: a run there could not even be set up."""
        home = self.supervisor.paths.home
        if is_full(home):
            raise RequestError(
                "disk_full",
                f"the state directory's disk is full ({format_bytes(free_bytes(home))} free at "
                f"{home}); free some space and try again",
            )

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "time": time.time()}

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        counts = self.db.state_counts()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "home": str(self.supervisor.paths.home),
            "uptime": time.time() - self.started,
            "runs": counts,
            "live": len(self.supervisor.live),
            "gpus": len(self.gpus),
        }

    def list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page of runs in creation order; ``next`` is the ``cursor`` of the next page.

        ``smoothing`` adds each run's ``ema`` (see ``tail_ema``); ``brief`` leaves
        only ``id`` and ``ema``, for a client that has the runs already.
        """
        after = _param(params, "cursor", int, 0)
        smoothing = _smoothing(params)
        ema_key = _param(params, "ema_key", str, "loss")
        brief = _param(params, "brief", bool, False)
        runs: list[dict[str, Any]] = []
        budget = RUNS_PAGE_BYTES
        for rid, run in self.db.runs_after(after, RUNS_PAGE):
            summary = {"id": run["id"]} if brief else self.summary(run)
            if smoothing is not None:
                summary["ema"] = tail_ema(self.db.points, rid, ema_key, smoothing)
            budget -= len(json.dumps(summary, default=str))
            if runs and budget < 0:
                return {"runs": runs, "next": after}
            runs.append(summary)
            after = rid
        return {"runs": runs, "next": after if len(runs) == RUNS_PAGE else None}

    def get_run(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.resolve(params.get("run"))
        point = self.resume_point(run)
        return {
            **self.summary(run),
            "resume_point": None if point is None else {"step": point[0], "path": str(point[1])},
            "events": self.db.events(run["id"], SHOWN_EVENTS),
            "event_count": self.db.event_count(run["id"]),
            "children": self.db.children(run["id"]),
            "dir": str(self.supervisor.paths.run_dir(run["id"]).path),
            "dir_missing": not self.supervisor.paths.run_dir(run["id"]).path.is_dir(),
        }

    def metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.resolve(params.get("run"))
        key = _param(params, "key", str, None)
        after = _param(params, "after_step", int, None)
        last = _param(params, "last", int, None)
        if last is not None:
            if key is None or not 1 <= last <= METRICS_PAGE:
                raise RequestError(
                    "bad_request", f"last needs a key and must be 1 to {METRICS_PAGE}"
                )
            return {"points": self.db.last_metrics(run["id"], key, last), "next": None}
        cursor = params.get("cursor")
        if cursor is not None and not (
            isinstance(cursor, list)
            and len(cursor) == 2
            and isinstance(cursor[0], str)
            and type(cursor[1]) is int
            and 0 <= cursor[1] <= INT64_MAX
        ):
            raise RequestError("bad_request", "cursor must be [key, index] from a previous page")
        start = None if cursor is None else (cursor[0], cursor[1])
        if _param(params, "columns", bool, False):
            if after is not None:
                raise RequestError("bad_request", "after_step goes with point rows, not columns")
            series, following = self.db.points.column_page(
                self.db.rid(run["id"]), key, start, COLUMNS_PAGE
            )
            return {"series": series, "next": None if following is None else list(following)}
        points, following = self.db.metrics(run["id"], key, after, start, METRICS_PAGE)
        return {"points": points, "next": None if following is None else list(following)}

    def series(self, params: dict[str, Any]) -> dict[str, Any]:
        """One metric at screen resolution (see ``engine.server.views``)."""
        run = self.resolve(params.get("run"))
        key = _param(params, "key", str)
        buckets = _param(params, "buckets", int, 200)
        axis = _param(params, "axis", str, "step")
        tail = _param(params, "tail", int, 0)
        smoothing = _smoothing(params)
        bounds = [params.get("lo"), params.get("hi")]
        if not 1 <= buckets <= MAX_BUCKETS:
            raise RequestError("bad_request", f"buckets must be 1 to {MAX_BUCKETS}")
        if axis not in AXES:
            raise RequestError("bad_request", f"axis must be one of {', '.join(AXES)}")
        if not 0 <= tail <= MAX_TAIL:
            raise RequestError("bad_request", f"tail must be 0 to {MAX_TAIL}")
        if not all(b is None or _number(b) for b in bounds):
            raise RequestError("bad_request", "lo and hi must be numbers")
        return series_view(
            self.db.points, self.ema_cache, self.db.rid(run["id"]), key, buckets, axis,
            bounds[0], bounds[1], tail, smoothing or None, self.interrupted,
        )

    def workloads(self, params: dict[str, Any]) -> dict[str, Any]:
        """Default configs: every built-in, or the one ``workload`` names (file specs too)."""
        spec = _param(params, "workload", str, None)
        if spec is None:
            return {name: dict(defaults) for name, defaults in BUILTIN_DEFAULTS.items()}
        cwd = _param(params, "cwd", str, os.getcwd())
        spec = resolve_spec(spec, cwd)
        return {spec: workload_defaults(spec)}

    def read_log(self, params: dict[str, Any]) -> dict[str, Any]:
        """Bytes of a run's stdout or stderr from ``offset`` (negative: from the end)."""
        run = self.resolve(params.get("run"))
        stream = _param(params, "stream", str, "stdout")
        if stream not in ("stdout", "stderr"):
            raise RequestError("bad_request", "stream must be stdout or stderr")
        offset = _param(params, "offset", int, 0)
        rundir = self.run_dir(run, "read the output of")
        path = rundir.stdout if stream == "stdout" else rundir.stderr
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size + offset) if offset < 0 else min(offset, size)
                f.seek(start)
                data = f.read(LOG_CHUNK)
        except FileNotFoundError:
            return {"data": "", "offset": 0, "state": run["state"]}
        return {
            "data": data.decode("utf-8", "replace"),
            "offset": start + len(data),
            "state": run["state"],
        }

    # -- actions ------------------------------------------------------------

    def _unique_name(self, base: str) -> str:
        """``base-1``, ``base-2``...: a new run's name when none is given."""
        return unique_name(name_from(base), self.store.name_taken, bare=False)

    def _check_name(self, name: str | None) -> None:
        if name is not None:
            problem = name_problem(name)
            if problem:
                raise RequestError("bad_request", problem)
            if self.store.name_taken(name):
                raise RequestError("bad_request", f"a run named {name!r} already exists")

    def _device(self, requested: str | None) -> str:
        busy = {
            int(r["device"].split(":")[1])
            for r in self.store.runs_in_states(["starting", "running", "paused"])
            if r["device"].startswith("cuda:")
        }
        return choose_device(requested, self.gpus, busy)

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a run from a workload and overrides, and start it."""
        cwd = _param(params, "cwd", str, os.getcwd())
        spec = resolve_spec(_param(params, "workload", str), cwd)
        overrides = _param(params, "overrides", list, [])
        name = _param(params, "name", str, None)
        steps = _param(params, "steps", int, None)
        env = _env(params)
        defaults = workload_defaults(spec)
        config = apply_overrides(defaults, overrides, strict=bool(defaults))
        if steps is not None:
            config["steps"] = steps
        _check_steps(config)
        self._check_name(name)
        device = self._device(_param(params, "device", str, None))
        base = Path(spec.partition(":")[0]).stem if spec.endswith(".py") or ":" in spec else spec
        self._check_room()
        run = self._new_run(spec, config, device, cwd, name or self._unique_name(base))
        self._launch_new(run, None if env is None else {"env": env})
        return self.summary(self.store.get_run(run["id"]) or run)

    def _launch_new(self, run: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Start a run just made; if the disk refuses its files, forget it entirely."""
        try:
            self.supervisor.launch(run, None, "started by user", extra)
        except OSError as exc:
            if not out_of_space(exc):
                raise
            shutil.rmtree(self.supervisor.paths.run_dir(run["id"]).path, ignore_errors=True)
            self.store.delete_run(run["id"])
            home = self.supervisor.paths.home
            raise RequestError(
                "disk_full", f"the state directory's disk is full ({exc.strerror} at {home})"
            ) from None

    def run_command(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a run that wraps a command (``traintop run -- CMD``), and start it."""
        cwd = _param(params, "cwd", str, os.getcwd())
        command = _param(params, "command", list)
        name = _param(params, "name", str, None)
        pattern = _param(params, "loss_pattern", str, None)
        env = _env(params)
        if env is None:
            env = dict(os.environ)  # the daemon's: already only what runs need
        if not command or not command[0]:
            raise RequestError("bad_config", "no command to run (traintop run -- CMD ...)")
        if not Path(cwd).is_dir():
            raise RequestError("bad_config", f"working directory not found: {cwd}")
        if shutil.which(command[0], path=env.get("PATH", os.defpath)) is None and not (
            os.sep in command[0] and os.access(Path(cwd, command[0]), os.X_OK)
        ):
            raise RequestError("bad_config", f"command not found: {command[0]}")
        try:
            compile_loss_pattern(pattern)
        except PatternError as exc:
            raise RequestError("bad_config", str(exc)) from None
        self._check_name(name)
        config = {"command": command, "loss_pattern": pattern}
        # Named for the script it runs (python train.py -> train), else the program.
        script = next((a for a in command if a.endswith(".py")), command[0])
        base = Path(script).stem or "run"
        # The device is the command's own business: "-" says traintop did not pick one.
        self._check_room()
        run = self._new_run(WRAPPED_WORKLOAD, config, "-", cwd, name or self._unique_name(base))
        self._launch_new(run, {"command": command, "env": env})
        return self.summary(self.store.get_run(run["id"]) or run)

    def _new_run(
        self,
        spec: str,
        config: dict[str, Any],
        device: str,
        cwd: str,
        name: str,
        parent: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        run_id = new_run_id()
        while self.store.get_run(run_id) is not None:
            run_id = new_run_id()
        run = {
            "id": run_id,
            "name": name,
            "workload": spec,
            "config": config,
            "state": RunState.QUEUED.value,
            "device": device,
            "cwd": cwd,
            "created": time.time(),
            "parent_id": parent["id"] if parent else None,
            "total_steps": step_total(config.get("steps")),
            "released": False,
        }
        reason = f"forked from {parent['id']}" if parent else "created by user"
        self.store.create_run(run, reason)
        created = self.store.get_run(run_id)
        assert created is not None
        return created

    def pause(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.resolve(params.get("run"))
        release = bool(_param(params, "release", bool, False))
        check_action("release" if release else "pause", RunState(run["state"]), run["released"])
        if run["workload"] == WRAPPED_WORKLOAD:
            if release:
                check_wrapped_action("release", run["id"])
            self.supervisor.stop_wrapped(run, pause=True)  # signals: no file needed
            return self.summary(self.store.get_run(run["id"]) or run)
        self.run_dir(run, "release" if release else "pause")
        self.supervisor.send_control(run, "release" if release else "pause")
        return self.summary(run)

    def resume(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.resolve(params.get("run"))
        check_action("resume", RunState(run["state"]), run["released"])
        if run["state"] == RunState.FAILED:
            self.run_dir(run, "resume")
            step, path = self._need_resume_point(run)
            self._check_room()
            self.store.update_run(run["id"], step=step)
            self.supervisor.launch(
                {**run, "step": step}, str(path),
                f"resumed from its last complete checkpoint, at step {step}",
            )
            return {**self.summary(self.store.get_run(run["id"]) or run), "resumed_from": step}
        if run["workload"] == WRAPPED_WORKLOAD:
            self.supervisor.stop_wrapped(run, pause=False)
        elif run["released"]:
            checkpoint = self._checkpoint(run, "resume")
            self._check_room()
            self.supervisor.launch(run, checkpoint, "resumed from its checkpoint")
        else:
            self.run_dir(run, "resume")
            self.supervisor.send_control(run, "resume")
        return self.summary(self.store.get_run(run["id"]) or run)

    def fork(self, params: dict[str, Any]) -> dict[str, Any]:
        """A child run from the parent's current step, with config overrides."""
        parent = self.resolve(params.get("run"))
        if parent["workload"] == WRAPPED_WORKLOAD:
            check_wrapped_action("fork", parent["id"])
        check_action("fork", RunState(parent["state"]), parent["released"])
        overrides = _param(params, "overrides", list, [])
        name = _param(params, "name", str, None)
        self._check_name(name)
        if attach_argv(parent["workload"]) is None:
            defaults = workload_defaults(parent["workload"])
        else:  # a traintop.init script declares its whole config itself
            defaults = parent["config"]
        config = apply_overrides(parent["config"], overrides, strict=bool(defaults))
        _check_steps(config)
        device = self._device(_param(params, "device", str, None) or parent["device"])
        # Checked before the child exists: a refused fork leaves nothing behind.
        self.run_dir(parent, "fork")
        checkpoint: str | None = None  # None: the parent is live and writes one when asked
        if parent["state"] == RunState.FAILED:
            step, path = self._need_resume_point(parent)
            checkpoint = str(path)
            parent = {**parent, "checkpoint": checkpoint, "step": step}
        elif parent["state"] == RunState.FINISHED or parent["released"]:
            checkpoint = self._checkpoint(parent, "fork")
        self._check_room()
        child = self._new_run(
            parent["workload"],
            config,
            device,
            parent["cwd"],
            name or self._unique_name(f"{parent['name']}-fork"),
            parent,
        )
        if checkpoint is not None:
            self.supervisor.on_checkpoint(parent["id"], child["id"], checkpoint, parent["step"])
        else:
            self.supervisor.send_control(parent, "checkpoint", child["id"])
        return self.summary(self.store.get_run(child["id"]) or child)

    def attach(self, params: dict[str, Any]) -> dict[str, Any]:
        """Register a running process that called ``traintop.init``; follow it from now on."""
        argv = _param(params, "argv", list)
        cwd = _param(params, "cwd", str)
        pid = _param(params, "pid", int)
        name = _param(params, "name", str, None)
        device = _param(params, "device", str, None)
        config = params.get("config") or {}
        env = _env(params)
        if not isinstance(config, dict):
            raise RequestError("bad_request", "parameter 'config' must be an object")
        if not argv:
            raise RequestError("bad_request", "parameter 'argv' must hold the command line")
        problem = None if name is None else name_problem(name)
        if problem:
            raise RequestError("bad_request", problem)
        self._check_room()
        try:
            pid_start = process_start(pid)
        except AttachError as exc:
            raise RequestError("bad_request", str(exc)) from None
        paths = self.supervisor.paths
        run_id = new_run_id()
        while self.store.get_run(run_id) is not None or paths.run_dir(run_id).path.exists():
            run_id = new_run_id()
        info = {"name": name, "config": config, "argv": argv, "cwd": cwd, "device": device,
                "pid": pid, "created": time.time()}
        run = create_attached_run(self.store, run_id, info)
        self.supervisor.follow_attached(run, pid, pid_start, env)
        return {
            **self.summary(self.store.get_run(run_id) or run),
            "dir": str(paths.run_dir(run_id).path),
            "control_offset": 0,
        }

    def kill(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.resolve(params.get("run"))
        check_action("kill", RunState(run["state"]), run["released"])
        grace = params.get("grace")
        if grace is None:
            grace = DEFAULT_KILL_GRACE
        # Not true/false, and not NaN or infinity, which json.loads lets through.
        if (
            not isinstance(grace, int | float)
            or isinstance(grace, bool)
            or not 0 <= grace <= sys.float_info.max
        ):
            raise RequestError("bad_request", "grace must be zero or more seconds")
        self.supervisor.kill(run, float(grace))
        return self.summary(self.store.get_run(run["id"]) or run)
