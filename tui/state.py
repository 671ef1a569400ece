"""What the TUI knows, as plain objects: runs, metric series, telemetry.

The connection feeds events in; widgets read from here when the app
refreshes them (a few times a second at most). Nothing here touches the
screen or the daemon, so it is tested without either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.common.format import shown
from tui.chart_math import DebiasedEma

RATE_WINDOW_S = 30.0
TELEMETRY_KEEP = 600
EMA_KEY = "loss"  # the metric of the table's EMA column


@dataclass
class RunEma:
    """The table's EMA of one run: the daemon's state at ``step``, extended by streamed points."""

    ema: DebiasedEma
    step: int = -1  # the last step folded in (a replayed point is skipped)
    value: float | None = None


class TuiState:
    """Runs, their EMA column, progress rates and telemetry (the chart's data is ChartFeed's)."""

    def __init__(self, smoothing: float = 0.6) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.telemetry: deque[dict[str, Any]] = deque(maxlen=TELEMETRY_KEEP)
        self.emas: dict[str, RunEma] = {}
        self.progress: dict[str, deque[tuple[float, int]]] = {}
        self.smoothing = smoothing
        # Runs that stored points since the app last looked (their chart views are behind).
        self.points_arrived: set[str] = set()
        self.connected = False
        # What the views must catch up on: the rows (runs came, went or changed
        # state), the cells of some runs, the chart, the telemetry panels.
        self.rows_dirty = self.chart_dirty = self.telemetry_dirty = False
        self.changed: set[str] = set()
        self.restated: set[str] = set()  # runs the daemon announced (a state change)

    def take_changed(self) -> set[str]:
        """The runs whose cells changed since the last call."""
        changed, self.changed = self.changed, set()
        self.restated.clear()
        return changed

    def take_restated(self) -> set[str]:
        """The runs announced since the last call: shown at once, not at the next second."""
        restated, self.restated = self.restated, set()
        self.changed -= restated
        return restated

    def mark_all_changed(self) -> None:
        """Every run's cells may differ (e.g. the smoothing of the EMA column changed)."""
        self.changed.update(self.runs)

    # -- feeding --------------------------------------------------------------

    def set_runs(self, runs: Iterable[dict[str, Any]]) -> None:
        """Every run as listed (with the daemon's EMA state of its loss, ``ema``, if asked)."""
        self.runs = {r["id"]: _displayable(r) for r in runs}
        self.set_emas(self.runs.values())
        self.rows_dirty = self.chart_dirty = True
        self.mark_all_changed()

    def set_emas(self, runs: Iterable[dict[str, Any]]) -> None:
        """Seed the EMA column from listed runs' ``ema`` ([accumulator, count, last step]).

        The daemon smoothed each run's stored points at ``self.smoothing``; points
        that stream in later go on from there.
        """
        for run in runs:
            ema = DebiasedEma(self.smoothing)
            seed = run.get("ema")
            if not seed:
                self.emas[run["id"]] = RunEma(ema)
                continue
            ema.last, ema.num_accum = float(seed[0]), int(seed[1])
            value = ema.last / (1.0 - ema.weight**ema.num_accum) if ema.num_accum else None
            self.emas[run["id"]] = RunEma(ema, int(seed[2]), value)
        self.mark_all_changed()

    def set_telemetry(self, samples: Iterable[dict[str, Any]]) -> None:
        self.telemetry.clear()
        self.telemetry.extend(samples)
        self.telemetry_dirty = True

    def apply_event(self, event: dict[str, Any]) -> None:
        """Fold one daemon event into the state."""
        topic, data = event.get("event"), event.get("data") or {}
        if topic == "runs":
            old = self.runs.get(data["id"], {})
            self.emas.setdefault(data["id"], RunEma(DebiasedEma(self.smoothing)))
            self.runs[data["id"]] = {
                **_displayable(data),
                "last": {**old.get("last", {}), **data.get("last", {})},
            }
            self.rows_dirty = self.chart_dirty = True
            self.changed.add(data["id"])
            self.restated.add(data["id"])
        elif topic == "metrics":
            self._apply_metrics(data["run"], data["points"])
        elif topic == "telemetry":
            before = _gpu_by_run(self.telemetry[-1]) if self.telemetry else {}
            self.telemetry.append(data)
            self.telemetry_dirty = True
            after = _gpu_by_run(data)
            # The GPU memory column: only runs whose figure moved (or appeared, or went).
            self.changed.update(r for r in before.keys() | after.keys()
                                if before.get(r) != after.get(r))

    def _apply_metrics(self, run_id: str, points: list[Sequence[Any]]) -> None:
        run = self.runs.get(run_id)
        if run is None or not points:
            return
        last = run.setdefault("last", {})
        for _step, key, value, _when in points:
            last[key] = value
        newest = max(points, key=lambda p: p[0])
        run["step"] = max(int(run.get("step") or 0), int(newest[0]) + 1)
        rate = self.progress.setdefault(run_id, deque(maxlen=120))
        rate.append((float(newest[3]), run["step"]))
        self.points_arrived.add(run_id)
        column = self.emas.get(run_id)
        if column is not None:
            losses = sorted((int(p[0]), p[2]) for p in points if p[1] == EMA_KEY)
            fresh = [value for step, value in losses if step > column.step]
            if fresh:
                column.step = losses[-1][0]
                smoothed = [v for v in column.ema.extend(fresh) if v is not None]
                column.value = smoothed[-1] if smoothed else column.value
        self.changed.add(run_id)

    # -- derived --------------------------------------------------------------

    def steps_per_second(self, run_id: str) -> float | None:
        """Steps a second over the last half minute of streamed progress."""
        run = self.runs.get(run_id)
        marks = self.progress.get(run_id)
        if run is None or run["state"] != "running" or not marks or len(marks) < 2:
            return None
        end_t, end_step = marks[-1]
        start = next((m for m in marks if end_t - m[0] <= RATE_WINDOW_S), marks[0])
        if end_t <= start[0] or end_step <= start[1]:
            return None
        return (end_step - start[1]) / (end_t - start[0])

    def eta_seconds(self, run_id: str) -> float | None:
        run = self.runs.get(run_id)
        rate = self.steps_per_second(run_id)
        if run is None or not rate or not run.get("total_steps"):
            return None
        return max(0.0, float(run["total_steps"] - run["step"]) / rate)

    def smoothed_last(self, run_id: str) -> float | None:
        """The debiased EMA of a run's loss at its last point (the table's EMA column)."""
        column = self.emas.get(run_id)
        return column.value if column is not None else None

    def take_points_arrived(self) -> set[str]:
        """The runs that stored points since the last call."""
        arrived, self.points_arrived = self.points_arrived, set()
        return arrived

    def gpu_memory(self, run_id: str) -> int | None:
        """GPU memory the run holds now (all GPUs), or None."""
        if not self.telemetry:
            return None
        return _gpu_by_run(self.telemetry[-1]).get(run_id)

    def family(self, run_id: str) -> list[str]:
        """The run, its ancestors and its descendants: the curves drawn together."""
        if run_id not in self.runs:
            return []
        ancestors, cursor = [], self.runs[run_id].get("parent_id")
        while cursor in self.runs and cursor not in ancestors:
            ancestors.append(cursor)
            cursor = self.runs[cursor].get("parent_id")
        descendants, frontier = [], [run_id]
        while frontier:
            current = frontier.pop()
            for run in self.runs.values():
                if run.get("parent_id") == current and run["id"] not in descendants:
                    descendants.append(run["id"])
                    frontier.append(run["id"])
        return [*reversed(ancestors), run_id, *descendants]


def _displayable(run: dict[str, Any]) -> dict[str, Any]:
    """The run with its name safe to draw (a name stored before names were checked may
    hold escape sequences); the TUI refers to runs by id, so nothing is sent back."""
    return {**run, "name": shown(str(run["name"]))}


def _gpu_by_run(sample: dict[str, Any]) -> dict[str, int]:
    """The GPU memory each run holds in one telemetry sample (runs holding none left out)."""
    held = {}
    for run_id, usage in (sample.get("runs") or {}).items():
        if usage and usage.get("gpu_memory"):
            held[run_id] = int(sum(v for v in usage["gpu_memory"].values() if v))
    return held
