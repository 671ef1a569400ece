"""The sweep view (``v``): a sweep's runs, or the marked runs, as a scatter of one
hyper-parameter against the best or last value of a metric, or (``p``) as parallel
coordinates: every setting they differ in an axis, each run a line across them.

``x`` picks the next hyper-parameter, ``b`` switches best and last, ``m`` the
metric, ``G`` groups the runs by setting (as the chart's ``G``: alike but for their
seeds, or in the keys named there), each setting a point at the mean of its runs
with a bar from the lowest to the highest (a line at that mean). ``j``/``k`` pick a
run, from the best down, drawn apart with its values; Enter closes the view on it,
selected in the runs table. The plot follows the runs as they train (redrawn every
two seconds).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.columns import Columns
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.client.events import RunInfo
from engine.client.importance import CLOSER_TRIALS, MATTERS, closer_axes, correlations
from engine.common.experiment import config_overrides
from engine.common.format import format_number
from engine.common.metric_goal import higher_is_better
from tui.parallel_data import SHADES, Parallel, parallel
from tui.scatter_data import (
    Scatter,
    ScatterPoint,
    metric_value,
    metrics_of,
    numeric_params,
    scatter,
)
from tui.widgets.parallel_plot import ParallelPlot
from tui.widgets.sweep_scatter import BEST, PICK, PICKED_COLOUR, POINT, SweepScatter

REDRAW_S = 2.0  # as the chart's live curve: values move with training


@dataclass(frozen=True)
class Grouping:
    """Whether the view opens grouped, and by which config keys (none: all but seeds)."""

    on: bool = False
    by: tuple[str, ...] = ()


def value_of(point: ScatterPoint) -> str:
    """A point's y, with a group's range: ``3.271 (3.264…3.278)``."""
    if point.low is None or point.high is None:
        return format_number(point.y)
    return f"{format_number(point.y)} ({format_number(point.low)}…{format_number(point.high)})"


@dataclass(frozen=True)
class CloserLook:
    """A new sweep to start around the best run (``n``): its workload, and its axes as
    the sweep dialog takes them (the best run's config, the settings that matter
    narrowed to their best bins)."""

    workload: str
    axes: str
    trials: int


class SweepView(ModalScreen["str | CloserLook | None"]):
    """A scatter of runs; the runs come from ``runs_of`` each time it is drawn. It
    closes with the run picked (Enter), a closer look to start (``n``), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,v", "close", "Close"),
        Binding("x", "next_param", "Next setting"),
        Binding("b", "toggle_best", "Best or last"),
        Binding("m", "next_metric", "Next metric"),
        Binding("G", "toggle_group", "Group by setting"),
        Binding("p", "toggle_parallel", "Parallel coordinates or scatter"),
        Binding("j,down", "pick(1)", "Next run, worse", priority=True),
        Binding("k,up", "pick(-1)", "Run before, better", priority=True),
        Binding("enter", "go", "Select the picked run", priority=True),
        Binding("n", "closer", "A closer look: a new sweep around the best"),
    ]

    def __init__(
        self,
        title: str,
        runs_of: Callable[[], Sequence[RunInfo]],
        colours: Mapping[str, str],
        labels: Mapping[str, str],
        grouping: Grouping = Grouping(),
    ) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.runs_of = runs_of
        self.colours, self.labels = dict(colours), dict(labels)
        self.group, self.by = grouping.on, grouping.by
        runs = runs_of()
        params = numeric_params(runs, self.group)
        self.param = params[0] if params else ""
        metrics = metrics_of(runs)
        self.metric = metrics[0] if metrics else "loss"
        self.use_best = True
        self.parallel = False  # parallel coordinates (p) instead of the scatter
        self.higher = False  # whether the metric plotted is better higher (set by draw)
        self.picked: str | None = None  # the run picked with j/k, drawn apart
        self._order: list[str] = []  # the runs (a group's first) drawn, best first

    def compose(self) -> ComposeResult:
        with Vertical(id="scatter-box"):
            yield Label(self.title_text, id="dialog-title")
            yield Static("", id="scatter-axes")
            yield SweepScatter(id="scatter")
            yield ParallelPlot(id="parallel")
            yield Static("", id="scatter-best")
            with VerticalScroll(id="scatter-runs-box"):  # the plot keeps its room
                yield Static("", id="scatter-runs")
            yield Static("[dim]x: setting  b: best/last  m: metric  G: group  p: parallel  "
                         "j/k: pick a run  enter: select it  n: closer look  esc: close[/]")

    def on_mount(self) -> None:
        self.draw()
        self.set_interval(REDRAW_S, self.draw)

    @property
    def shown(self) -> Scatter | None:
        """What the scatter draws now."""
        return self.query_one(SweepScatter).scatter

    @property
    def lines(self) -> Parallel | None:
        """What the parallel coordinates draw now."""
        return self.query_one(ParallelPlot).data

    def draw(self) -> None:
        """Plot the runs as they are now, by the current axes."""
        runs = self.runs_of()
        self.higher = self._higher()
        self.query_one(SweepScatter).display = not self.parallel
        self.query_one(ParallelPlot).display = self.parallel
        if self.parallel:
            self._draw_parallel(runs)
            return
        drawn = scatter(runs, self.param, self.metric, self.use_best, self.colours, self.labels,
                        self.group, self.by, self.higher)
        sign = -1.0 if self.higher else 1.0
        ordered = sorted(drawn.points, key=lambda p: sign * p.y)  # the best first
        self._set_order([p.run_id for p in ordered])
        self.query_one(SweepScatter).set_data(drawn, self.picked)
        log = " (log)" if drawn.log_x else ""
        grouped = ""
        if self.group:
            alike = f"in {' '.join(self.by)}" if self.by else "but for seeds"
            counted = sum(p.runs for p in drawn.points)
            grouped = (f"   [b]{counted} runs as {len(drawn.points)} means[/b]"
                       if counted > len(drawn.points) else f"   [dim]no runs alike {alike}[/]")
        self.query_one("#scatter-axes", Static).update(
            f"x: [b]{escape(self.param or 'no numeric setting')}[/b]{log}   "
            f"y: [b]{escape(drawn.y_name)}[/b]{' (log)' if drawn.log_y else ''}"
            f"{self._goal()}{grouped}"
        )
        told = next((p for p in ordered if p.run_id == self.picked), None) or next(
            (p for p in ordered if p.best), None)
        line = "" if told is None else (
            f"{self._whom(told.run_id, told.label, told.runs)}: {escape(drawn.y_name)} "
            f"{value_of(told)} at {escape(self.param)}={format_number(told.x)}")
        self._say(line, drawn.missing, len(runs))
        # Every point named, in its colour, lowest first: the key to the plot, in
        # columns, so that no name is broken across two lines.
        self.query_one("#scatter-runs", Static).update(Columns([
            Text.from_markup(f"[{p.colour or 'default'}]{BEST if p.best else POINT}[/] "
                             f"{escape(p.label)} [dim]{value_of(p)}[/]")
            for p in ordered
        ], padding=(0, 3)))

    def _draw_parallel(self, runs: Sequence[RunInfo]) -> None:
        weight = {c.key: c.importance for c in correlations(runs, self._value_of)}
        drawn = parallel(runs, self.metric, self.use_best, self.labels, self.group, self.by,
                         weight, self.higher)
        ordered = list(reversed(drawn.lines))  # best first
        self._set_order([line.run_id for line in ordered])
        self.query_one(ParallelPlot).set_data(drawn, self.picked)
        names = [f"[b]{escape(a.name)}[/b]{' (log)' if a.log else ''}" + (
            f" [dim]{weight[a.name]:.2f}[/]" if weight.get(a.name) is not None else "")
            for a in drawn.axes]
        more = (f"   [dim]{len(drawn.left_out)} more not drawn: "
                f"{escape(' '.join(drawn.left_out))}[/]" if drawn.left_out else "")
        grouped = f"   [b]{sum(line.runs for line in drawn.lines)} runs as " \
                  f"{len(drawn.lines)} means[/b]" if self.group else ""
        self.query_one("#scatter-axes", Static).update(
            f"axes [dim](importance)[/]: {'  '.join(names[:-1])} → "
            f"{names[-1] if names else ''}{self._goal()}{grouped}{more}")
        told = next((line for line in ordered if line.run_id == self.picked), None) or next(
            (line for line in ordered if line.best), None)
        text = "" if told is None else (
            f"{self._whom(told.run_id, told.label, told.runs)}: {escape(drawn.y_name)} "
            f"{format_number(told.value)}" + "".join(
                f"  {escape(axis.name)}={escape(value)}"
                for axis, value in zip(drawn.axes[:-1], told.texts, strict=False)
                if value and f"{axis.name}=" not in told.label))  # (a sweep's label has it)
        self._say(text, drawn.missing, len(runs))
        self.query_one("#scatter-runs", Static).update(Columns([
            Text.from_markup(f"[{'b bright_white' if line.best else SHADES[line.shade]}]"
                             f"{BEST if line.best else POINT}[/] "
                             f"{escape(line.label)} [dim]{format_number(line.value)}[/]")
            for line in ordered
        ], padding=(0, 3)))

    def _higher(self) -> bool:
        """Whether a higher value of the metric plotted is the better: as the sweep's
        rule says when it judges that metric (``--mode max``), else as its name says."""
        for run in self.runs_of():
            rules = [r for r in (run.early_stop, run.search) if isinstance(r, dict) and "mode" in r]
            for rule in rules:
                if (rule.get("metric") or run.loss_key) == self.metric:
                    return bool(rule["mode"] == "max")
            if rules:
                break
        return higher_is_better(self.metric)

    def _goal(self) -> str:
        """Said of a metric ranked the other way up (an accuracy)."""
        return " [dim](higher is better)[/]" if self.higher else ""

    def _value_of(self, run: RunInfo) -> float | None:
        """The run's value of the metric plotted (best or last), as a score where lower
        is better (an accuracy negated), for ``engine.client.importance``."""
        value = metric_value(run, self.metric, self.use_best, self.higher)
        return None if value is None else -value if self.higher else value

    def _set_order(self, order: list[str]) -> None:
        """The runs drawn, best first; a picked run no longer drawn is let go."""
        self._order = order
        if self.picked not in order:
            self.picked = None

    def _whom(self, run_id: str, label: str, runs: int) -> str:
        """The run the line under the plot tells of: the picked one, else the best."""
        own = f" ({run_id})" if runs == 1 else ""
        if run_id == self.picked:
            rank = self._order.index(run_id) + 1
            return (f"[b {PICKED_COLOUR}]{PICK}[/] picked, {rank} of {len(self._order)}: "
                    f"[b]{escape(label)}[/b]{own}")
        return f"[b]{BEST}[/b] best: [b]{escape(label)}[/b]{own}"

    def _say(self, line: str, missing: int, runs: int) -> None:
        if missing:
            line += f"   [dim]{missing} of {runs} runs have no value to plot[/]"
        self.query_one("#scatter-best", Static).update(line)

    def action_pick(self, step: int) -> None:
        """Pick the next run down the ranking (``step`` 1) or up it (-1), from the best."""
        if not self._order:
            return
        at = self._order.index(self.picked) if self.picked in self._order else -1
        self.picked = self._order[min(max(at + step, 0), len(self._order) - 1)]
        self.draw()

    def action_go(self) -> None:
        """Close on the picked run (none picked: the best), to select it in the table."""
        self.dismiss(self.picked or (self._order[0] if self._order else None))

    def action_toggle_parallel(self) -> None:
        self.parallel = not self.parallel
        self.draw()

    def action_next_param(self) -> None:
        params = numeric_params(self.runs_of(), self.group)
        if params:
            index = params.index(self.param) if self.param in params else -1
            self.param = params[(index + 1) % len(params)]
            self.draw()

    def action_next_metric(self) -> None:
        metrics = metrics_of(self.runs_of())
        if metrics:
            index = metrics.index(self.metric) if self.metric in metrics else -1
            self.metric = metrics[(index + 1) % len(metrics)]
            self.draw()

    def action_toggle_group(self) -> None:
        """Points by setting, or by run again; grouped, a seed is no longer an x."""
        self.group = not self.group
        params = numeric_params(self.runs_of(), self.group)
        if self.param not in params:
            self.param = params[0] if params else ""
        self.draw()

    def action_toggle_best(self) -> None:
        self.use_best = not self.use_best
        self.draw()

    def action_closer(self) -> None:
        """Close with a sweep of the best run's config, each setting that matters narrowed
        to its best bin (``traintop ls --corr``'s closer look), for the sweep dialog."""
        runs = self.runs_of()
        closer = closer_axes(runs, correlations(runs, self._value_of), self._value_of)
        if closer is None:
            self.notify(f"no setting of these runs matters enough to narrow (importance "
                        f"{MATTERS} or more, against {escape(self.metric)})",
                        severity="warning")
            return
        best, axes = closer
        named = {axis.partition("=")[0] for axis in axes}
        fixed = [o for o in config_overrides(best.config) if o.partition("=")[0] not in named]
        random_axis = any("(" in axis for axis in axes)
        self.dismiss(CloserLook(best.workload, shlex.join([*fixed, *axes]),
                                CLOSER_TRIALS if random_axis else 0))

    def action_close(self) -> None:
        self.dismiss(None)
