"""What the TUI knows, as plain objects: runs, metric series, telemetry.

The connection feeds events in; widgets read from here when the app
refreshes them (a few times a second at most). Nothing here touches the
screen or the daemon, so it is tested without either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.chart_math import DebiasedEma

TERMINAL = ("finished", "failed", "killed")
RATE_WINDOW_S = 30.0
TELEMETRY_KEEP = 600
TAIL_POINTS = 1024


@dataclass
class MetricSeries:
    """One metric of one run: steps ascending, values (None: NaN), wall times."""

    steps: list[int] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    trims: int = 0  # how often old points were dropped (caches of derived values check it)

    def add(self, step: int, value: float | None, when: float) -> None:
        # A replayed or overlapping point (history fetch racing the stream) is skipped.
        if self.steps and step <= self.steps[-1]:
            return
        self.steps.append(step)
        self.values.append(value)
        self.times.append(when)


@dataclass
class RunMetrics:
    series: dict[str, MetricSeries] = field(default_factory=dict)

    def add_points(self, points: Iterable[Sequence[Any]]) -> None:
        for step, key, value, when in sorted(points, key=lambda p: (p[1], p[0])):
            self.series.setdefault(key, MetricSeries()).add(int(step), value, float(when))


class TuiState:
    """Runs, their metrics (for the runs whose history was loaded) and telemetry."""

    def __init__(self, smoothing: float = 0.6) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, RunMetrics] = {}
        self.telemetry: deque[dict[str, Any]] = deque(maxlen=TELEMETRY_KEEP)
        # The latest losses of runs whose whole history is not loaded: enough for
        # the table's EMA column, which forgets older points geometrically.
        self.tails: dict[str, MetricSeries] = {}
        self.progress: dict[str, deque[tuple[float, int]]] = {}
        self.smoothing = smoothing
        # Per (run, metric): the running EMA, the series' trims, points seen, last value.
        self._ema: dict[tuple[str, str], tuple[DebiasedEma, int, int, float | None]] = {}
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
        self.runs = {r["id"]: r for r in runs}
        self.rows_dirty = self.chart_dirty = True
        self.mark_all_changed()

    def set_history(self, run_id: str, points: Iterable[Sequence[Any]]) -> None:
        """The full stored history of one run (merged with what streamed meanwhile)."""
        fresh = RunMetrics()
        fresh.add_points(points)
        streamed = self.metrics.get(run_id)
        if streamed is not None:
            for key, series in streamed.series.items():
                for step, value, when in zip(
                    series.steps, series.values, series.times, strict=True
                ):
                    fresh.series.setdefault(key, MetricSeries()).add(step, value, when)
        self.metrics[run_id] = fresh
        for key in fresh.series:
            self._ema.pop((run_id, key), None)
        self.chart_dirty = True

    def set_tail(self, run_id: str, points: Iterable[Sequence[Any]]) -> None:
        """The latest ``loss`` points of a run, for its EMA in the table."""
        tail = MetricSeries()
        for step, _key, value, when in points:
            tail.add(int(step), value, float(when))
        self.tails[run_id] = tail
        self.changed.add(run_id)

    def set_telemetry(self, samples: Iterable[dict[str, Any]]) -> None:
        self.telemetry.clear()
        self.telemetry.extend(samples)
        self.telemetry_dirty = True

    def apply_event(self, event: dict[str, Any]) -> None:
        """Fold one daemon event into the state."""
        topic, data = event.get("event"), event.get("data") or {}
        if topic == "runs":
            old = self.runs.get(data["id"], {})
            if data["id"] not in self.metrics:
                self.tails.setdefault(data["id"], MetricSeries())
            self.runs[data["id"]] = {
                **data,
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
        if run_id in self.metrics:
            self.metrics[run_id].add_points(points)
            self.chart_dirty = True
        elif run_id in self.tails:
            tail = self.tails[run_id]
            for step, key, value, when in points:
                if key == "loss":
                    tail.add(int(step), value, float(when))
            if len(tail.steps) > 2 * TAIL_POINTS:
                for column in (tail.steps, tail.values, tail.times):
                    del column[:TAIL_POINTS]
                tail.trims += 1
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

    def smoothed_last(self, run_id: str, key: str = "loss") -> float | None:
        """The debiased EMA of a loaded run's metric at its last point."""
        run_metrics = self.metrics.get(run_id)
        series = run_metrics.series.get(key) if run_metrics else None
        if series is None and key == "loss":
            series = self.tails.get(run_id)
        if series is None:
            return None
        cached = self._ema.get((run_id, key))
        if (
            cached is None
            or cached[0].weight != self.smoothing
            or cached[1] != series.trims
            or cached[2] > len(series.values)
        ):
            cached = (DebiasedEma(self.smoothing), series.trims, 0, None)
        ema, trims, seen, last = cached
        for value in reversed(ema.extend(series.values[seen:])):
            if value is not None:
                last = value
                break
        self._ema[(run_id, key)] = (ema, trims, len(series.values), last)
        return last

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


def _gpu_by_run(sample: dict[str, Any]) -> dict[str, int]:
    """The GPU memory each run holds in one telemetry sample (runs holding none left out)."""
    held = {}
    for run_id, usage in (sample.get("runs") or {}).items():
        if usage and usage.get("gpu_memory"):
            held[run_id] = int(sum(v for v in usage["gpu_memory"].values() if v))
    return held
