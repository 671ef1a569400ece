"""What the TUI knows, as plain objects: runs, metric series, telemetry.

The connection feeds events in; widgets read from here when the app
refreshes them (a few times a second at most). Nothing here touches the
screen or the daemon, so it is tested without either.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from engine.client.eta import finish_in, seconds_left
from engine.client.events import (
    EmaSeed,
    Event,
    LogText,
    MetricBatch,
    RunInfo,
    RunRemoved,
    RunRewound,
    Sample,
)
from engine.common.format import shown
from tui.chart_math import DebiasedEma
from tui.chart_view import ChartView
from tui.compare import assign_colours
from tui.notify import TOLD_STATES

RATE_WINDOW_S = 30.0
TELEMETRY_KEEP = 600


@dataclass
class RunEma:
    """The table's EMA of one run: the daemon's state at ``step``, extended by streamed points."""

    ema: DebiasedEma
    step: int = -1  # the last step folded in (a replayed point is skipped)
    value: float | None = None


class TuiState:
    """Runs, their EMA column, progress rates, telemetry and how the chart shows them
    (the chart's data is ChartFeed's)."""

    def __init__(self, smoothing: float = 0.6) -> None:
        self.view = ChartView(smoothing=smoothing)
        self.runs: dict[str, RunInfo] = {}
        self.telemetry: deque[Sample] = deque(maxlen=TELEMETRY_KEEP)
        self.emas: dict[str, RunEma] = {}
        self.progress: dict[str, deque[tuple[float, int]]] = {}
        # Runs that stored points since the app last looked (their chart views are behind).
        self.points_arrived: set[str] = set()
        self.connected = False
        # What the views must catch up on: the rows (runs came, went or changed
        # state), the cells of some runs, the chart, the telemetry panels.
        self.rows_dirty = self.chart_dirty = self.telemetry_dirty = False
        self.changed: set[str] = set()
        self.restated: set[str] = set()  # runs the daemon announced (a state change)
        # Runs marked for comparison, in the order marked, each with its colour.
        self.marks: dict[str, str] = {}
        # Runs pinned (``t``): at the top of the table and always on the chart.
        self.pinned: list[str] = []
        self.listed = False  # the daemon has listed the runs at least once
        # Runs seen entering a told state (finished, failed, paused) by a live event;
        # a listing (connecting, reconnecting) adds none: it replays, nothing happened.
        self.stopped: list[RunInfo] = []
        # Sweeps seen ending by a live event: every run of theirs has ended.
        self.sweeps_ended: list[str] = []
        # Runs this TUI was asked to kill (K): a sweep its user ended is not told as done.
        self.killed_here: set[str] = set()
        self.emas_stale = False  # a run went back to a checkpoint: ask the daemon's EMAs

    @property
    def smoothing(self) -> float:
        """The EMA weight of the chart and of the table's EMA column alike."""
        return self.view.smoothing

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

    def take_stopped(self) -> list[RunInfo]:
        """The runs seen stopping since the last call, in the order seen."""
        stopped, self.stopped = self.stopped, []
        return stopped

    def take_sweeps_ended(self) -> list[str]:
        """The sweeps seen ending since the last call, in the order seen."""
        ended, self.sweeps_ended = self.sweeps_ended, []
        return ended

    def mark_all_changed(self) -> None:
        """Every run's cells may differ (e.g. the smoothing of the EMA column changed)."""
        self.changed.update(self.runs)

    # -- feeding --------------------------------------------------------------

    def set_runs(self, runs: Iterable[RunInfo]) -> None:
        """Every run as listed."""
        self.runs = {run.id: _displayable(run) for run in runs}
        self.set_marks(r for r in self.marks if r in self.runs)  # a run gone loses its mark
        self.pinned = [r for r in self.pinned if r in self.runs]
        self.listed = True
        for run_id in self.runs:
            self.emas[run_id] = RunEma(DebiasedEma(self.smoothing))
        self.rows_dirty = self.chart_dirty = True
        self.mark_all_changed()

    def set_highest(self, values: Mapping[str, dict[str, float]]) -> None:
        """Each run's highest value of each metric, as listed after the runs (points that
        came between are kept: the higher of either)."""
        for run_id, highest in values.items():
            run = self.runs.get(run_id)
            if run is not None and highest:
                self.runs[run_id] = replace(run, highest=_extreme(max, run.highest, highest))
                self.changed.add(run_id)  # a max: column's cell
        self.rows_dirty = True

    def set_emas(self, seeds: Iterable[EmaSeed]) -> None:
        """Seed the EMA column from the daemon's EMA state of each run's loss.

        The daemon smoothed each run's stored points at ``self.smoothing``; points
        that stream in later go on from there.
        """
        for seed in seeds:
            ema = DebiasedEma(self.smoothing)
            if seed.ema is None:
                self.emas[seed.id] = RunEma(ema)
                continue
            ema.last, ema.num_accum, step = seed.ema
            value = ema.last / (1.0 - ema.weight**ema.num_accum) if ema.num_accum else None
            self.emas[seed.id] = RunEma(ema, step, value)
        self.mark_all_changed()

    def set_telemetry(self, samples: Iterable[Sample]) -> None:
        """The telemetry history, oldest first (what the panels draw their sparklines from)."""
        self.telemetry.clear()
        self.telemetry.extend(samples)
        self.telemetry_dirty = True

    def apply_event(self, event: Event) -> None:
        """Fold one daemon event into the state."""
        match event:
            case RunInfo():
                self._apply_run(event)
            case RunRemoved():
                self._forget_run(event.id)
            case RunRewound():
                self._rewind_run(event)
            case MetricBatch():
                self._apply_metrics(event)
            case Sample():
                before = _gpu_by_run(self.telemetry[-1]) if self.telemetry else {}
                self.telemetry.append(event)
                self.telemetry_dirty = True
                after = _gpu_by_run(event)
                # The GPU memory column: only runs whose figure moved (or appeared, or went).
                self.changed.update(r for r in before.keys() | after.keys()
                                    if before.get(r) != after.get(r))
            case LogText():
                pass  # the log pane follows its run on a connection of its own

    def _apply_run(self, run: RunInfo) -> None:
        old = self.runs.get(run.id)
        self.emas.setdefault(run.id, RunEma(DebiasedEma(self.smoothing)))
        # An announcement carries the row; the latest and best values so far are kept.
        last = {**old.last, **run.last} if old is not None else run.last
        best = _extreme(min, old.best, run.best) if old is not None else run.best
        highest = _extreme(max, old.highest, run.highest) if old is not None else run.highest
        self.runs[run.id] = replace(_displayable(run), last=last, best=best, highest=highest)
        ended = old is not None and old.state != run.state and run.state in TOLD_STATES
        if ended or (old is not None and run.retried > old.retried):  # failed and retried
            self.stopped.append(self.runs[run.id])
        if (run.sweep and old is not None and not old.terminal and run.terminal
                and run.id not in self.killed_here
                and all(r.terminal for r in self.runs.values() if r.sweep == run.sweep)):
            self.sweeps_ended.append(run.sweep)  # its last run has ended (not by a K here)
        self.rows_dirty = self.chart_dirty = True
        self.changed.add(run.id)
        self.restated.add(run.id)

    def _forget_run(self, run_id: str) -> None:
        """A run removed for good: its row, marks, pin and figures go."""
        if self.runs.pop(run_id, None) is None:
            return
        for table in (self.emas, self.progress):
            table.pop(run_id, None)
        if run_id in self.marks:  # (the other marks keep their colours otherwise)
            self.set_marks(r for r in self.marks if r != run_id)
        self.pinned = [r for r in self.pinned if r != run_id]
        self.points_arrived.discard(run_id)
        self.changed.discard(run_id)
        self.restated.discard(run_id)
        self.rows_dirty = self.chart_dirty = True

    def _rewind_run(self, event: RunRewound) -> None:
        """A run goes on from a checkpoint at an earlier step: its values are the
        daemon's (the dropped points' are gone), its EMA column is the daemon's again
        (``emas_stale``), its rate starts over and its chart view is behind."""
        run = self.runs.get(event.id)
        if run is None:
            return
        self.runs[event.id] = run.advanced(
            dict(event.last), dict(event.best), dict(event.highest), min(run.step, event.rewound)
        )
        self.emas[event.id] = RunEma(DebiasedEma(self.smoothing))
        self.emas_stale = True
        self.progress.pop(event.id, None)
        self.points_arrived.add(event.id)
        self.changed.add(event.id)
        self.rows_dirty = self.chart_dirty = True

    def _apply_metrics(self, batch: MetricBatch) -> None:
        run_id, points = batch.run, batch.points
        run = self.runs.get(run_id)
        if run is None or not points:
            return
        last, best, highest = dict(run.last), dict(run.best), dict(run.highest)
        for point in points:
            value = last[point.key] = point.value
            # NaN fails every test; ±inf is no extreme (the daemon leaves them out too).
            if math.isfinite(value):
                if value < best.get(point.key, math.inf):
                    best[point.key] = value
                if value > highest.get(point.key, -math.inf):
                    highest[point.key] = value
        newest = max(points, key=lambda p: p.step)
        step = max(run.step, newest.step + 1)
        run = self.runs[run_id] = run.advanced(last, best, highest, step)
        rate = self.progress.setdefault(run_id, deque(maxlen=120))
        rate.append((newest.time, step))
        self.points_arrived.add(run_id)
        column = self.emas.get(run_id)
        if column is not None:
            key = run.loss_key
            losses = sorted((p.step, p.value) for p in points if p.key == key)
            fresh = [value for step, value in losses if step > column.step]
            if fresh:
                column.step = losses[-1][0]
                smoothed = [v for v in column.ema.extend(fresh) if v is not None]
                column.value = smoothed[-1] if smoothed else column.value
        self.changed.add(run_id)

    # -- marks ----------------------------------------------------------------

    def set_marks(self, run_ids: Iterable[str]) -> None:
        """Mark exactly ``run_ids`` (in this order), colouring them as a set."""
        order = list(dict.fromkeys(run_ids))
        colours = assign_colours(order)
        self.marks = {run_id: colours[run_id] for run_id in order}

    def toggle_mark(self, run_id: str) -> bool:
        """Mark ``run_id``, or unmark it if marked; True if it is marked now."""
        marked = run_id not in self.marks
        self.set_marks([*(r for r in self.marks if r != run_id), *([run_id] if marked else [])])
        return marked

    def toggle_pin(self, run_id: str) -> bool:
        """Pin ``run_id``, or unpin it if pinned; True if it is pinned now."""
        pinned = run_id not in self.pinned
        self.pinned = [*(r for r in self.pinned if r != run_id), *([run_id] if pinned else [])]
        self.rows_dirty = True
        return pinned

    # -- derived --------------------------------------------------------------

    def steps_per_second(self, run_id: str) -> float | None:
        """Steps a second over the last half minute of streamed progress; until two
        points have streamed (a TUI just opened), the pace the daemon listed."""
        run = self.runs.get(run_id)
        marks = self.progress.get(run_id)
        if run is None or run.state != "running":
            return None
        if not marks or len(marks) < 2:
            return run.rate
        end_t, end_step = marks[-1]
        start = next((m for m in marks if end_t - m[0] <= RATE_WINDOW_S), marks[0])
        if end_t <= start[0] or end_step <= start[1]:
            return None
        return (end_step - start[1]) / (end_t - start[0])

    def eta_seconds(self, run_id: str) -> float | None:
        run = self.runs.get(run_id)
        return None if run is None else seconds_left(run, self.steps_per_second(run_id))

    def runs_eta(self, run_ids: Iterable[str]) -> float | None:
        """Seconds until every run of ``run_ids`` (a sweep's, a queue's) still to train
        has ended, at the rates streamed (``engine.client.eta.finish_in``)."""
        runs = (self.runs[r] for r in run_ids if r in self.runs)
        return finish_in(runs, lambda run: self.steps_per_second(run.id))

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
        ancestors: list[str] = []
        cursor = self.runs[run_id].parent_id
        while cursor is not None and cursor in self.runs and cursor not in ancestors:
            ancestors.append(cursor)
            cursor = self.runs[cursor].parent_id
        descendants, frontier = [], [run_id]
        while frontier:
            current = frontier.pop()
            for run in self.runs.values():
                if run.parent_id == current and run.id not in descendants:
                    descendants.append(run.id)
                    frontier.append(run.id)
        return [*reversed(ancestors), run_id, *descendants]


def _displayable(run: RunInfo) -> RunInfo:
    """The run with its name safe to draw (a name stored before names were checked may
    hold escape sequences); the TUI refers to runs by id, so nothing is sent back."""
    name = shown(run.name)
    return run if name == run.name else replace(run, name=name)


def _extreme(
    pick: Callable[[Iterable[float]], float], old: dict[str, float], new: dict[str, float]
) -> dict[str, float]:
    """The lower (``min``) or higher (``max``) value of each key of either (an
    announcement lists none: ``old``)."""
    if not new:
        return old
    return {k: pick(v for v in (old.get(k), new.get(k)) if v is not None)
            for k in old.keys() | new.keys()}


def _gpu_by_run(sample: Sample) -> dict[str, int]:
    """The GPU memory each run holds in one telemetry sample (runs holding none left out)."""
    held = {}
    for run_id, usage in sample.runs.items():
        if usage.gpu_memory:
            held[run_id] = int(sum(v for v in usage.gpu_memory.values() if v))
    return held
