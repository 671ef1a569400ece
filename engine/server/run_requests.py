"""The requests that change runs: start, run_command, attach, pause, resume, fork, kill,
remove.

Every check that can fail on user input happens before anything is written,
so a refused request changes nothing stored. What differs between kinds of run
is asked of the run's backend (``engine.server.backends``).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.common.config import apply_overrides, step_total
from engine.common.output_metrics import (
    PatternError,
    compile_loss_pattern,
    compile_metric_patterns,
)
from engine.common.runs import (
    DEFAULT_DIVERGENCE_FACTOR,
    DEFAULT_KILL_GRACE,
    RunState,
    check_action,
    name_from,
    name_problem,
    new_run_id,
    unique_name,
)
from engine.common.sweep import MAX_SWEEP_RUNS
from engine.run.workloads.registry import workload_defaults
from engine.rundir.disk_space import out_of_space
from engine.server.attach import AttachError, create_attached_run, process_start
from engine.server.backends import backend_for
from engine.server.backends.wrapped import WRAPPED_WORKLOAD
from engine.server.devices import check_device
from engine.server.launch_file import write_queued
from engine.server.queue_requests import QueueRequests
from engine.server.removal import (
    keep_for_forks,
    removal_freed,
    removal_reply,
    remove_checkpoints,
    still_needed,
)
from engine.server.requests import (
    RequestError,
    check_steps,
    divergence_param,
    env_param,
    fault_params,
    param,
    resolve_spec,
    tags_param,
)
from engine.server.retries import reruns_as_started
from engine.server.run_reports import CHILDREN_SEP

# What each request that makes a run may be given; anything else is refused, so a
# client newer than this daemon is told, rather than silently ignored.
_QUEUE_PARAMS = {"queue", "priority", "after", "gpus", "gpu_memory", "sweep", "tags"}
_DIVERGENCE_PARAMS = {"divergence_pause", "divergence_factor"}
_FAULT_PARAMS = {"checkpoint_every", "retries"}
ALLOWED = {
    "start": {"workload", "overrides", "name", "steps", "env", "device", "cwd", "early_stop",
              "search", "restart_of",
              *_QUEUE_PARAMS, *_DIVERGENCE_PARAMS, *_FAULT_PARAMS},
    "run_command": {"command", "name", "loss_pattern", "metric_patterns", "only_patterns",
                    "logdir", "env", "cwd", "retries", "restart_of",
                    *_QUEUE_PARAMS, *_DIVERGENCE_PARAMS},
    "fork": {"run", "overrides", "name", "device", *_QUEUE_PARAMS, *_DIVERGENCE_PARAMS,
             *_FAULT_PARAMS},
    "fork_variants": {"run", "variants", "names", "device", "early_stop", *_QUEUE_PARAMS,
                      *_DIVERGENCE_PARAMS, *_FAULT_PARAMS},
}


def check_known(method: str, params: dict[str, Any]) -> None:
    """Refuse a parameter ``method`` does not know, naming it."""
    unknown = sorted(set(params) - ALLOWED[method])
    if unknown:
        raise RequestError(
            "bad_request",
            f"{method} does not take {', '.join(map(repr, unknown))} "
            "(is this traintop older than the client?)",
        )


def refuse_if_nothing_to_train(parent: dict[str, Any], configs: list[dict[str, Any]]) -> None:
    """A fork from an ended run's last step that would train no step (its ``steps`` not
    raised past it) is refused before anything is made: forks of it in a list would
    each finish at once, having used a slot and a copy of the checkpoint for nothing."""
    step = int(parent["step"])
    short = [c["steps"] for c in configs if type(c.get("steps")) is int and c["steps"] <= step]
    if short:
        raise RequestError("bad_request", f"run {parent['id']} is at step {step}, so a fork "
                           f"with steps={short[0]} would have nothing to train: give it more "
                           f"steps, e.g. steps={2 * step if step else 100}")


class RunRequests(QueueRequests):
    """The requests that create, steer and end runs (and the backends' ``Host``)."""

    def _unique_name(self, base: str) -> str:
        """``base-1``, ``base-2``...: a new run's name when none is given."""
        return unique_name(name_from(base), self.store.name_taken, bare=False)

    def _check_name(self, name: str | None) -> None:
        """One clear error for a name that is malformed or taken."""
        if name is not None:
            problem = name_problem(name)
            if problem:
                raise RequestError("bad_request", problem)
            if self.store.name_taken(name):
                raise RequestError("bad_request", f"a run named {name!r} already exists")

    def start(self, params: dict[str, Any], reason: str = "created by user") -> dict[str, Any]:
        """Create a run from a workload and overrides, and queue it (it starts if it may);
        ``reason``: its first event's (a search's trial says why it was made)."""
        check_known("start", params)
        cwd = param(params, "cwd", str, os.getcwd())
        spec = resolve_spec(param(params, "workload", str), cwd)
        overrides = param(params, "overrides", list, [])
        name = param(params, "name", str, None)
        steps = param(params, "steps", int, None)
        env = env_param(params)
        divergence = divergence_param(params, DEFAULT_DIVERGENCE_FACTOR)
        defaults = workload_defaults(spec)
        config = apply_overrides(defaults, overrides, strict=bool(defaults))
        if steps is not None:
            config["steps"] = steps
        check_steps(config)
        self._check_name(name)
        device = check_device(param(params, "device", str, None), self.gpus)
        queued = {**self.queue_fields(params, device), **fault_params(params)}
        if queued["gpus"] > 1:
            raise RequestError(
                "bad_request", "a workload trains on one device: --gpus above 1 is for "
                "commands that use several GPUs themselves (traintop run)"
            )
        base = Path(spec.partition(":")[0]).stem if spec.endswith(".py") or ":" in spec else spec
        queued, reason = self._restart_of(params, queued, reason)
        self.check_room()
        run = self._new_run(
            spec, config, device, cwd, name or self._unique_name(base), divergence=divergence,
            queued=queued, reason=reason,
        )
        self._queue_new(run, env)
        return self.summary(self.store.get_run(run["id"]) or run)

    def _queue_new(self, run: dict[str, Any], env: dict[str, str] | None) -> None:
        """Queue a run just made (it starts now if it may); if the disk refuses its
        files, forget it entirely.

        Its environment waits in a launch.json of generation 0 until it starts.
        """
        try:
            write_queued(self.supervisor.paths, run, env)
        except OSError as exc:
            raise self._unmade(run["id"], exc) from None
        self.supervisor.scheduler.run_pass()
        self.supervisor.announce(run["id"])

    def _unmade(self, run_id: str, exc: OSError) -> RequestError:
        """Forget a run whose files the disk refused, and say why in one line: nothing is
        left of it, so a retry makes one run, not two."""
        shutil.rmtree(self.supervisor.paths.run_dir(run_id).path, ignore_errors=True)
        self.store.remove_run(run_id)
        home = self.supervisor.paths.home
        if out_of_space(exc):
            return RequestError(
                "disk_full", f"the state directory's disk is full ({exc.strerror} at {home})")
        where = f": {exc.filename}" if exc.filename else ""
        return RequestError("disk_refused", f"cannot make the run's files under {home} "
                            f"({exc.strerror}{where}); is the state directory writable?")

    def run_command(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a run that wraps a command (``traintop run -- CMD``), and queue it."""
        check_known("run_command", params)
        cwd = param(params, "cwd", str, os.getcwd())
        command = param(params, "command", list)
        name = param(params, "name", str, None)
        pattern = param(params, "loss_pattern", str, None)
        metric_patterns = param(params, "metric_patterns", list, [])
        only_patterns = param(params, "only_patterns", bool, False)
        logdir = param(params, "logdir", str, None)
        env = env_param(params)
        divergence = divergence_param(params, DEFAULT_DIVERGENCE_FACTOR)
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
            compile_metric_patterns(metric_patterns)
        except PatternError as exc:
            raise RequestError("bad_config", str(exc)) from None
        if only_patterns and pattern is None and not metric_patterns:
            raise RequestError(
                "bad_config", "--only-patterns needs --metric NAME=REGEX or --loss-pattern"
            )
        if logdir is not None and not Path(logdir).is_absolute():
            raise RequestError("bad_config", f"logdir must be an absolute path: {logdir}")
        self._check_name(name)
        config: dict[str, Any] = {"command": command, "loss_pattern": pattern}
        if metric_patterns or only_patterns:  # a run without them keeps its config as it was
            config |= {"metric_patterns": metric_patterns, "only_patterns": only_patterns}
        if logdir is not None:
            config["logdir"] = logdir
        # Named for the script it runs (python train.py -> train), else the program.
        script = next((a for a in command if a.endswith(".py")), command[0])
        base = Path(script).stem or "run"
        # The device is the command's own business ("-"), unless it asks for GPUs: then
        # it is shown those the queue gives it (CUDA_VISIBLE_DEVICES).
        queued = {**self.queue_fields(params, "cuda" if self.gpus else "-"),
                  **fault_params(params)}
        if queued["gpus"] and not (self.gpus or self.supervisor.scheduler.gpu_view()[0]):
            raise RequestError("bad_request", "GPUs asked for, but no NVIDIA GPU is visible here")
        device = "cuda" if queued["gpus"] else "-"
        queued, reason = self._restart_of(params, queued, "created by user")
        self.check_room()
        run = self._new_run(
            WRAPPED_WORKLOAD, config, device, cwd, name or self._unique_name(base),
            divergence=divergence, queued=queued, reason=reason,
        )
        self._queue_new(run, env)
        return self.summary(self.store.get_run(run["id"]) or run)

    def _restart_of(self, params: dict[str, Any], queued: dict[str, Any],
                    reason: str) -> tuple[dict[str, Any], str]:
        """A new run's fields and first event's reason with the run it restarts, if the
        request names one (``restart_of``: an id)."""
        restarted = param(params, "restart_of", str, None)
        if restarted is None:
            return queued, reason
        if self.store.get_run(restarted) is None:
            raise RequestError("not_found", f"no run {restarted!r} to restart")
        return {**queued, "restart_of": restarted}, f"{reason}: a restart of {restarted}"

    def _new_run(
        self,
        spec: str,
        config: dict[str, Any],
        device: str,
        cwd: str,
        name: str,
        parent: dict[str, Any] | None = None,
        divergence: float | None = DEFAULT_DIVERGENCE_FACTOR,
        queued: dict[str, Any] | None = None,
        reason: str = "created by user",
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
            "divergence_factor": divergence,
            "awaiting": "checkpoint" if parent else None,
            **(queued or {}),
        }
        self.store.create_run(run, f"forked from {parent['id']}" if parent else reason)
        created = self.store.get_run(run_id)
        assert created is not None
        return created

    def pause(self, params: dict[str, Any]) -> dict[str, Any]:
        """Pause a run (``release``: and free its memory), as its kind of run is paused."""
        run = self.resolve(params.get("run"))
        release = bool(param(params, "release", bool, False))
        check_action("release" if release else "pause", RunState(run["state"]), run["released"])
        if release:
            self.refuse_if_unable(run, "release")
        backend_for(run).pause(self, run, release)
        return self.summary(self.store.get_run(run["id"]) or run)

    def resume(self, params: dict[str, Any]) -> dict[str, Any]:
        """Let a paused run go on, restart a released one, or a failed one from a checkpoint."""
        run = self.resolve(params.get("run"))
        check_action("resume", RunState(run["state"]), run["released"])
        if run["state"] == RunState.FAILED:
            self.run_dir(run, "resume")
            if reruns_as_started(run):  # a wrapped command runs again, as a retry runs it
                step, path, why = int(run["step"]), None, "to run its command again"
            else:
                step, path = self.need_resume_point(run)
                why = f"to resume from its last complete checkpoint, at step {step}"
            self.check_room()
            self.store.update_run(run["id"], step=step, ended=None, exit_code=None)
            launch_from = None if path is None else str(path)
            self.supervisor.enqueue({**run, "step": step}, launch_from, why)
            self.supervisor.rearm_divergence(run["id"])
            resumed = self.summary(self.store.get_run(run["id"]) or run)
            return resumed if path is None else {**resumed, "resumed_from": step}
        if run["released"]:
            checkpoint = self.checkpoint(run, "resume")
            self.check_room()
            # It gave its slot back: it waits for one again, at the back of its queue.
            self.supervisor.enqueue(run, checkpoint, "to resume from its checkpoint")
        elif (live := self.supervisor.live.get(run["id"])) is not None and live.giving_room:
            # Its memory is being released for a queued run: a 'resume' sent now would be
            # read after the release and lost. It queues again once out, as one released.
            live.resume_asked = True
        else:
            backend_for(run).resume(self, run)
        # After it took: a refused resume keeps the reason the run paused.
        self.supervisor.rearm_divergence(run["id"])
        return self.summary(self.store.get_run(run["id"]) or run)

    # The backends' Host: how a request steers a live run.

    def send_control(self, run: dict[str, Any], cmd: str, request: str | None = None) -> None:
        """Send a control command; one clear error if the run's directory (its file) is gone."""
        self.run_dir(run, cmd)
        self.supervisor.send_control(run, cmd, request)

    def stop_process(self, run: dict[str, Any], pause: bool) -> None:
        """Stop or continue the run's process by signal (no file is needed)."""
        self.supervisor.stop_process(run, pause)

    def fork(self, params: dict[str, Any]) -> dict[str, Any]:
        """A child run from the parent's current step, with config overrides.

        The child waits in its queue (its parent's, unless named) with the checkpoint.
        """
        check_known("fork", params)
        overrides = param(params, "overrides", list, [])
        return self._forks(params, [overrides], [param(params, "name", str, None)])[0]

    def fork_variants(self, params: dict[str, Any]) -> dict[str, Any]:
        """Several children of one parent, each with its own overrides, all from one
        checkpoint: the same step, so their curves part from one point.

        ``variants`` holds each child's overrides, ``names`` their names (each may be
        None); every variant is checked before the first child exists.
        """
        check_known("fork_variants", params)
        variants = params.get("variants")
        if not isinstance(variants, list) or not variants:
            raise RequestError("bad_request", "parameter 'variants' must be a list of "
                               "override lists, one per fork")
        if len(variants) > MAX_SWEEP_RUNS:
            raise RequestError("bad_request", f"{len(variants)} forks in one request: "
                               f"at most {MAX_SWEEP_RUNS}")
        variants = [param({"variants": v}, "variants", list) for v in variants]
        names: list[str] | None = param(params, "names", list, None)
        if names is not None and len(names) != len(variants):
            raise RequestError("bad_request", "names must hold one name per variant")
        if names is not None and len(set(names)) != len(names):
            raise RequestError("bad_request", "two variants are given the same name")
        return {"runs": self._forks(params, variants, names or [None] * len(variants))}

    def _forks(self, params: dict[str, Any], variants: list[list[Any]],
               names: Sequence[str | None]) -> list[dict[str, Any]]:
        """Fork the parent once per variant; one checkpoint serves them all."""
        parent = self.resolve(params.get("run"))
        self.refuse_if_unable(parent, "fork")
        check_action("fork", RunState(parent["state"]), parent["released"])
        for name in names:
            self._check_name(name)
        divergence = divergence_param(params, parent["divergence_factor"])
        strict = bool(backend_for(parent).fork_defaults(parent))
        configs = []
        for overrides in variants:
            configs.append(apply_overrides(parent["config"], overrides, strict=strict))
            check_steps(configs[-1])
        requested = param(params, "device", str, None)
        # Told nothing, a fork of a GPU run rides beside its parent on its GPU, taking no
        # share of it, once its memory has room for the parent's peak: comparing the two
        # side by side is what forking is for, on a machine with one GPU too.
        rides = requested is None and params.get("gpus") is None and (
            parent["device"].startswith("cuda:") and "," not in parent["device"]
        )
        if requested is not None:
            device = check_device(requested, self.gpus)
        elif rides:
            device = parent["device"]
        else:  # the parent's kind of device; the queue picks which GPU
            device = "cuda" if parent["device"].startswith("cuda") else parent["device"]
        queued = {**self.queue_fields(params, device, inherit=parent),
                  **fault_params(params, inherit=parent)}
        if rides:
            queued["gpus"] = 0.0
        # Checked before the children exist: a refused fork leaves nothing behind.
        self.run_dir(parent, "fork")
        checkpoint: str | None = None  # None: the parent is live and writes one when asked
        if parent["state"] == RunState.FAILED:
            step, path = self.need_resume_point(parent)
            checkpoint = str(path)
            parent = {**parent, "checkpoint": checkpoint, "step": step}
        if parent["state"] in (RunState.FINISHED, RunState.FAILED):
            refuse_if_nothing_to_train(parent, configs)
        if parent["state"] == RunState.FINISHED or parent["released"]:
            checkpoint = self.checkpoint(parent, "fork")
        self.check_room()
        children = [
            self._new_run(parent["workload"], config, device, parent["cwd"],
                          name or self._unique_name(f"{parent['name']}-fork"), parent,
                          divergence, queued)
            for config, name in zip(configs, names, strict=True)
        ]
        ids = [child["id"] for child in children]
        if checkpoint is None:  # one checkpoint, asked once, answers every child
            self.supervisor.send_control(parent, "checkpoint", CHILDREN_SEP.join(ids))
        else:
            self.supervisor.on_checkpoint(parent["id"], ids, checkpoint, parent["step"])
        return [self.summary(self.store.get_run(i) or c) for i, c in zip(ids, children,
                                                                          strict=True)]

    def attach(self, params: dict[str, Any]) -> dict[str, Any]:
        """Register a running process that called ``traintop.init``; follow it from now on."""
        argv = param(params, "argv", list)
        cwd = param(params, "cwd", str)
        pid = param(params, "pid", int)
        name = param(params, "name", str, None)
        device = param(params, "device", str, None)
        config = params.get("config") or {}
        env = env_param(params)
        if not isinstance(config, dict):
            raise RequestError("bad_request", "parameter 'config' must be an object")
        if not argv:
            raise RequestError("bad_request", "parameter 'argv' must hold the command line")
        problem = None if name is None else name_problem(name)
        if problem:
            raise RequestError("bad_request", problem)
        self.check_room()
        try:
            pid_start = process_start(pid)
        except AttachError as exc:
            raise RequestError("bad_request", str(exc)) from None
        paths = self.supervisor.paths
        run_id = new_run_id()
        while self.store.get_run(run_id) is not None or paths.run_dir(run_id).path.exists():
            run_id = new_run_id()
        info = {"name": name, "config": config, "argv": argv, "cwd": cwd, "device": device,
                "pid": pid, "created": time.time(), "tags": tags_param(params),
                "divergence_factor": divergence_param(params, DEFAULT_DIVERGENCE_FACTOR)}
        run = create_attached_run(self.store, run_id, info)
        try:
            self.supervisor.follow_attached(run, pid, pid_start, env)
        except OSError as exc:
            raise self._unmade(run_id, exc) from None
        return {
            **self.summary(self.store.get_run(run_id) or run),
            "dir": str(paths.run_dir(run_id).path),
            "control_offset": 0,
        }

    def kill(self, params: dict[str, Any]) -> dict[str, Any]:
        """Kill a run: its kind's signal ladder, SIGKILL once ``grace`` seconds are up."""
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

    def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        """Remove an ended run for good: its row, events, points and files (``dry_run``:
        check that it could be, and say what it would free); with ``checkpoints``, only
        its checkpoints (``removal.remove_checkpoints``)."""
        run = self.resolve(params.get("run"))
        check_action("remove", RunState(run["state"]), run["released"])
        if run["id"] in self.supervisor.live:  # ended in its row, its process not yet gone
            raise RequestError(
                "invalid_state", f"run {run['id']} is still ending; try again in a moment"
            )
        dry_run = param(params, "dry_run", bool, False)
        if param(params, "checkpoints", bool, False):
            reply = remove_checkpoints(self.supervisor.paths, self.store, self.supervisor.trash,
                                       run, dry_run)
            if not dry_run:
                self.supervisor.announce(run["id"])
            return reply
        why = still_needed(self.supervisor.paths, self.store, run["id"])
        if why is not None:
            raise RequestError("invalid_state", f"cannot remove {run['id']}: {why}")
        if dry_run:
            return removal_reply(run, removal_freed(self.supervisor.paths, self.store, run["id"]))
        keep_for_forks(self.supervisor.paths, self.store, run["id"])
        freed, rid = self.supervisor.trash.remove(run["id"])
        if rid is not None:
            self.ema_cache.drop_run(rid)
        self.supervisor.publish("runs", {"id": run["id"], "removed": True})
        return removal_reply(run, freed)
