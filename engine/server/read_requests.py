"""The requests that only read: answered on reader threads, from one snapshot."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from engine import __version__
from engine.common.config import INT64_MAX
from engine.common.config_diff import UNSET, config_diff
from engine.common.output_lines import training_loss_key
from engine.common.packed import pack
from engine.common.protocol import MAX_BUCKETS, MAX_TAIL
from engine.run.workloads.registry import BUILTIN_DEFAULTS, workload_defaults
from engine.rundir.disk_space import disk_use
from engine.server.output_order import merged_tail
from engine.server.points import Columns
from engine.server.requests import (
    RequestError,
    is_number,
    param,
    resolve_spec,
    smoothing_param,
)
from engine.server.run_lookup import RunLookup
from engine.server.views import AXES, series_view, tail_ema

LOG_CHUNK = 256 * 1024
# Points per 'metrics' reply at most (the store also bounds a page's bytes).
METRICS_PAGE = 25_000
# Points per columns reply: ~45 bytes each in JSON (at most ~70: 2.8 MB, under the cap);
# packed, 32 bytes each (3.2 MB).
COLUMNS_PAGE = 40_000
PACKED_PAGE = 100_000
# A 'list_runs' page: at most this many runs and about this many bytes of JSON.
RUNS_PAGE = 200
RUNS_PAGE_BYTES = 1024 * 1024
# The latest state changes a 'get_run' reply carries (a run paused a million times...).
SHOWN_EVENTS = 200
LINEAGE_SHOWN = 64  # forks of forks a run's detail lists, the latest (PBT makes chains)


class ReadRequests(RunLookup):
    """ping, status, list_runs, get_run, metrics, series, workloads and read_log."""

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        """Proof of life, with the daemon's clock."""
        return {"pong": True, "time": time.time()}

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        """The daemon itself: pid, version, home, uptime, runs by state, its warm pool."""
        counts = self.db.state_counts()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "home": str(self.supervisor.paths.home),
            "uptime": time.time() - self.started,
            "after_unclean_stop": self.after_unclean_stop,
            "runs": counts,
            "live": len(self.supervisor.live),
            "gpus": len(self.gpus),
            "warm_pool": self.supervisor.warm.describe(),
            "store_problem": self.supervisor.store.problem(),
        }

    def list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page of runs in creation order; ``next`` is the ``cursor`` of the next page.

        ``smoothing`` adds each run's ``ema`` (see ``tail_ema``); ``brief`` leaves
        only ``id`` and ``ema``, for a client that has the runs already. ``best`` adds
        each run's lowest value of each metric so far (one query for the page, from the
        chunks' summaries and the points not yet in a chunk), ``highest`` its highest
        value of each (the same way, asked for apart: ``ls -c max:acc``; a brief listing
        may have it too, for the TUI's filter). ``sizes`` adds the bytes
        each run's directory takes on the disk (``size``: checkpoints, spool, logs).
        """
        after = param(params, "cursor", int, 0)
        smoothing = smoothing_param(params)
        ema_key = param(params, "ema_key", str, None)  # None: each run's training loss
        brief = param(params, "brief", bool, False)
        with_best = param(params, "best", bool, False) and not brief
        with_highest = param(params, "highest", bool, False)
        with_sizes = param(params, "sizes", bool, False) and not brief
        runs: list[dict[str, Any]] = []
        budget = RUNS_PAGE_BYTES
        page = self.db.runs_after(after, RUNS_PAGE)
        rids = [rid for rid, _ in page]
        best = self.db.points.lowest_values(rids) if with_best else {}
        highest = self.db.points.highest_values(rids) if with_highest else {}
        for rid, run in page:
            summary = {"id": run["id"]} if brief else self.summary(run)
            if with_best:
                summary["best"] = best.get(rid, {})
            if with_highest:
                summary["highest"] = highest.get(rid, {})
            if with_sizes:
                summary["size"] = disk_use(self.supervisor.paths.run_dir(run["id"]).path)
            if smoothing is not None:
                key = ema_key or training_loss_key(
                    summary["last"] if "last" in summary else self.db.last_values(run["id"])
                )
                summary["ema"] = tail_ema(self.db.points, rid, key, smoothing) if key else None
            budget -= len(json.dumps(summary, default=str))
            if runs and budget < 0:
                return self._page(runs, after)
            runs.append(summary)
            after = rid
        return self._page(runs, after if len(runs) == RUNS_PAGE else None)

    def _page(self, runs: list[dict[str, Any]], after: int | None) -> dict[str, Any]:
        """A page of ``list_runs``; with ``store_problem`` while the store cannot be
        written (the runs listed are then as of when it could)."""
        page: dict[str, Any] = {"runs": runs, "next": after}
        problem = self.supervisor.store.problem()
        if problem:
            page["store_problem"] = problem
        return page

    def _lineage(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Each fork from the run's first ancestor down to it, the oldest first (at most
        LINEAGE_SHOWN): which run forked which, at what step, and the config keys it
        changed, ``[old, new]`` (null: not set). A PBT run's schedule, or a hand-made
        run's history of changes."""
        forks: list[dict[str, Any]] = []
        child = run
        while child["parent_id"] and len(forks) < LINEAGE_SHOWN:
            parent = self.db.get_run(str(child["parent_id"]))
            if parent is None:
                break
            changed = config_diff([parent["config"], child["config"]])
            forks.append({
                "parent": parent["id"], "run": child["id"], "step": child["fork_step"],
                "changes": {k: [None if v is UNSET else v for v in pair]
                            for k, pair in changed.items()},
            })
            child = parent
        return forks[::-1]

    def get_run(self, params: dict[str, Any]) -> dict[str, Any]:
        """One run in full: its summary, lowest value of each metric, resume point, latest
        events, forks and directory; with ``size``, what its files take on the disk (a
        walk of its directory: for the detail, not for a poll)."""
        run = self.resolve(params.get("run"))
        point = self.resume_point(run)
        rid = self.db.rid(run["id"])
        return {
            **self.summary(run),
            "best": self.db.points.lowest_values([rid]).get(rid, {}),
            "resume_point": None if point is None else {"step": point[0], "path": str(point[1])},
            "events": self.db.events(run["id"], SHOWN_EVENTS),
            "event_count": self.db.event_count(run["id"]),
            "children": self.db.children(run["id"]),
            "lineage": self._lineage(run),
            "dir": str(self.supervisor.paths.run_dir(run["id"]).path),
            "dir_missing": not self.supervisor.paths.run_dir(run["id"]).path.is_dir(),
            "size": disk_use(self.supervisor.paths.run_dir(run["id"]).path)
            if param(params, "size", bool, False) else None,
            "parent_removed": bool(run["parent_id"])
            and self.db.get_run(str(run["parent_id"])) is None,
        }

    def metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page of a run's points (or columns), or the last ``last`` of one metric."""
        run = self.resolve(params.get("run"))
        key = param(params, "key", str, None)
        after = param(params, "after_step", int, None)
        last = param(params, "last", int, None)
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
        if param(params, "columns", bool, False):
            if after is not None:
                raise RequestError("bad_request", "after_step goes with point rows, not columns")
            packed = param(params, "packed", bool, False)
            blocks, following = self.db.points.column_page(
                self.db.rid(run["id"]), key, start, PACKED_PAGE if packed else COLUMNS_PAGE
            )
            series = [packed_block(b) if packed else listed_block(b) for b in blocks]
            return {"series": series, "next": None if following is None else list(following)}
        points, following = self.db.metrics(run["id"], key, after, start, METRICS_PAGE)
        return {"points": points, "next": None if following is None else list(following)}

    def series(self, params: dict[str, Any]) -> dict[str, Any]:
        """One metric at screen resolution (see ``engine.server.views``)."""
        run = self.resolve(params.get("run"))
        key = param(params, "key", str)
        buckets = param(params, "buckets", int, 200)
        axis = param(params, "axis", str, "step")
        tail = param(params, "tail", int, 0)
        smoothing = smoothing_param(params)
        bounds = [params.get("lo"), params.get("hi")]
        if not 1 <= buckets <= MAX_BUCKETS:
            raise RequestError("bad_request", f"buckets must be 1 to {MAX_BUCKETS}")
        if axis not in AXES:
            raise RequestError("bad_request", f"axis must be one of {', '.join(AXES)}")
        if not 0 <= tail <= MAX_TAIL:
            raise RequestError("bad_request", f"tail must be 0 to {MAX_TAIL}")
        if not all(b is None or is_number(b) for b in bounds):
            raise RequestError("bad_request", "lo and hi must be numbers")
        return series_view(
            self.db.points, self.ema_cache, self.db.rid(run["id"]), key, buckets, axis,
            bounds[0], bounds[1], tail, smoothing or None, self.interrupted,
        )

    def workloads(self, params: dict[str, Any]) -> dict[str, Any]:
        """Default configs: every built-in, or the one ``workload`` names (file specs too)."""
        spec = param(params, "workload", str, None)
        if spec is None:
            return {name: dict(defaults) for name, defaults in BUILTIN_DEFAULTS.items()}
        cwd = param(params, "cwd", str, os.getcwd())
        spec = resolve_spec(spec, cwd)
        return {spec: workload_defaults(spec)}

    def read_log(self, params: dict[str, Any]) -> dict[str, Any]:
        """Bytes of a run's stdout or stderr from ``offset`` (negative: from the end), or
        the tail of both in the order they were written (``stream="both"``)."""
        run = self.resolve(params.get("run"))
        stream = param(params, "stream", str, "stdout")
        if stream not in ("stdout", "stderr", "both"):
            raise RequestError("bad_request", "stream must be stdout, stderr or both")
        offset = param(params, "offset", int, 0)
        rundir = self.run_dir(run, "read the output of")
        if stream == "both":  # the tail of both, in the order written: [[stream, text]...]
            if offset >= 0:
                raise RequestError("bad_request", "stream both reads a tail: offset < 0")
            segments = merged_tail(rundir, min(-offset, LOG_CHUNK))
            return {"segments": [list(s) for s in segments], "state": run["state"]}
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


def listed_block(block: Columns) -> dict[str, Any]:
    """A key's columns as JSON lists: ``{key, start, steps, values, times_us}``."""
    return {"key": block.key, "start": block.start, "steps": block.steps.tolist(),
            "values": block.values.tolist(), "times_us": block.times_us.tolist()}


def packed_block(block: Columns) -> dict[str, Any]:
    """A key's columns packed (``engine.common.packed``), with their length ``n``."""
    return {"key": block.key, "start": block.start, "n": len(block.steps),
            "steps": pack(block.steps), "values": pack(block.values),
            "times_us": pack(block.times_us)}
