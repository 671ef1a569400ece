"""The chart's zoom, cursor and labels: the maths by hand, and the widget drawn by a real
Textual app under run_test() (the app with a real daemon is tests/test_tui_chart.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tests.test_chart import BRAILLE, decay, run_chart
from tui.chart_labels import LABEL_ROWS, Label, dot_row, label_texts, place_labels, value_at
from tui.chart_zoom import MIN_SPAN, TAIL_SHARE, PlotFrame, XZoom
from tui.widgets.loss_chart import GUTTER, LossChart, Series

# --- the x range ------------------------------------------------------------------------


def test_a_tail_follows_the_end_in_jumps_of_a_share_of_its_span() -> None:
    tail = XZoom(1000.0)
    assert tail.following and not tail.whole
    quantum = 1000.0 * TAIL_SHARE
    assert quantum == 250.0
    assert tail.window((0.0, 5003.0)) == (4250.0, 5250.0)
    assert tail.window((0.0, 5250.0)) == (4250.0, 5250.0)  # points came: the same window
    assert tail.window((0.0, 5251.0)) == (4250.0 + quantum, 5250.0 + quantum)
    assert tail.window((0.0, 900.0)) is None  # shorter than the tail: the whole run
    assert XZoom().window((0.0, 5000.0)) is None
    assert XZoom(500.0, 1200.0).window((0.0, 9000.0)) == (1200.0, 1700.0)  # a fixed window


def test_zooming_keeps_the_cursor_where_it_is_on_screen() -> None:
    extent = (0.0, 10_000.0)
    zoom = XZoom(1000.0, 2000.0)
    zoomed = zoom.zoomed(2.0, 2250.0, extent)
    assert zoomed == XZoom(500.0, 2125.0)
    window = zoomed.window(extent)
    assert window is not None
    # A quarter into the window before, a quarter into it after.
    assert (2250.0 - window[0]) / (window[1] - window[0]) == 0.25
    assert zoomed.zoomed(0.5, 2250.0, extent) == zoom  # and back out


def test_zoom_limits_whole_run_tail_and_narrowest() -> None:
    extent = (0.0, 10_000.0)
    assert XZoom().zoomed(2.0, None, extent) == XZoom(5000.0)  # no cursor: the end, a tail
    assert XZoom(5000.0).zoomed(0.5, None, extent) == XZoom()  # as wide as the run: all
    assert XZoom(1000.0, 8900.0).zoomed(0.5, 9800.0, extent).following  # reaches the end
    narrow = XZoom(20.0, 100.0).zoomed(2.0, 110.0, extent)
    assert narrow.span == MIN_SPAN
    assert XZoom(1000.0, 0.0).zoomed(2.0, 0.0, extent) == XZoom(500.0, 0.0)
    assert XZoom().zoomed(2.0, 5.0, None) == XZoom()  # nothing drawn yet: nothing to zoom


def test_panning_stops_at_the_start_and_follows_at_the_end() -> None:
    extent = (0.0, 10_000.0)
    assert XZoom(1000.0, 100.0).panned(-0.25, extent) == XZoom(1000.0, 0.0)
    assert XZoom(1000.0, 4000.0).panned(0.25, extent) == XZoom(1000.0, 4250.0)
    assert XZoom(1000.0, 8900.0).panned(0.25, extent) == XZoom(1000.0)  # a tail now
    assert XZoom(1000.0).panned(-0.25, extent) == XZoom(1000.0, 8750.0)  # from 9000
    assert XZoom().panned(0.25, extent) == XZoom()  # the whole run does not move


def test_last_n_cycles_through_the_spans_shorter_than_the_runs() -> None:
    spans = []
    zoom = XZoom()
    for _ in range(4):
        zoom = zoom.next_last((0.0, 200_000.0))
        spans.append(zoom.span)
    assert spans == [1000.0, 10_000.0, 100_000.0, None]
    assert XZoom().next_last((0.0, 5000.0)).next_last((0.0, 5000.0)) == XZoom()
    assert XZoom().next_last((0.0, 600.0)) == XZoom()
    assert XZoom(1000.0).describe("step") == "last 1k steps"
    assert XZoom(500.0, 2000.0).describe("step") == "steps 2k to 2.5k"
    assert XZoom(50.0, 700.0).describe("elapsed") == "zoomed, 11m40s to 12m30s"
    assert XZoom(3600.0).describe("time") == "last 1h"
    day = (0.0, 86_400.0)  # on a time axis, 'last N' is 10 minutes, an hour, six hours
    assert [XZoom(s).next_last(day, "elapsed").span for s in (None, 600.0, 3600.0, 21_600.0)] \
        == [600.0, 3600.0, 21_600.0, None]


@given(st.floats(-1e6, 1e6), st.floats(1.0, 1e6), st.integers(1, 400))
def test_a_columns_middle_falls_in_that_column(lo: float, span: float, width: int) -> None:
    frame = PlotFrame(lo, lo + span, GUTTER, width)
    for column in {0, width // 2, width - 1}:
        assert frame.column_of(frame.x_at(column)) == column
    assert frame.x_under(GUTTER - 1) is None  # the y axis
    assert frame.x_under(GUTTER + width) is None


# --- labels, y ticks, readout -----------------------------------------------------------


def _overlapping(placed: list[tuple[int, int, int]]) -> bool:
    """Whether two (row, start, end) spans on one row overlap or touch."""
    for n, (row, start, end) in enumerate(placed):
        for other_row, other_start, other_end in placed[n + 1:]:
            if row == other_row and start <= other_end and other_start <= end:
                return True
    return False


def test_two_close_forks_stack_their_labels() -> None:
    labels = [Label(10, label_texts("fork df2n7y")), Label(12, label_texts("fork 7jfa7f"))]
    placed = place_labels(labels, 70, 3)
    assert [(p.row, p.start, p.text) for p in placed] == [
        (0, 11, "fork df2n7y"), (1, 13, "fork 7jfa7f")
    ]


@given(
    st.lists(st.integers(0, 79), min_size=1, max_size=12),
    st.integers(1, 4),
)
def test_placed_labels_never_overlap_and_sit_by_their_marker(
    columns: list[int], rows: int
) -> None:
    labels = [Label(c, label_texts(f"fork r{n:05d}")) for n, c in enumerate(columns)]
    placed = place_labels(labels, 80, rows)
    spans = [(p.row, p.start, p.start + len(p.text)) for p in placed]
    assert not _overlapping(spans)
    for p in placed:
        assert 0 <= p.row < rows and p.start >= 0 and p.start + len(p.text) <= 80
        assert p.start == p.column + 1 or p.start + len(p.text) == p.column
    # The first marker from the left always gets its whole label.
    assert placed[0].text.startswith("fork ")


def test_a_tick_value_labels_the_row_its_line_is_drawn_on() -> None:
    xs = [float(x) for x in range(300)]
    ys: list[float | None] = [1.0 + (x // 100) for x in range(300)]  # flat at 1, 2 and 3

    def scenario(chart: LossChart) -> None:
        chart.set_data([Series("steps", xs, ys)], [], "step")

    _, lines = run_chart((60, 21), scenario)
    rows = {line[: GUTTER - 1].strip(): r for r, line in enumerate(lines[:-1])}
    for value, third in (("1.0", 0), ("2.0", 1), ("3.0", 2)):
        start = GUTTER + third * (60 - GUTTER) // 3 + 2
        drawn = [r for r, line in enumerate(lines[1:-1], 1) if line[start] in BRAILLE]
        assert drawn == [rows[value]], (value, drawn, rows)
    assert dot_row(2.0, 0.0, 4.0, 5) == round(2.0 * 19 / 4.0)


def test_the_readout_is_the_last_point_at_or_before_the_cursor() -> None:
    xs = [1.0, 2.0, 2.0, 5.0]
    ys: list[float | None] = [10.0, 3.0, 4.0, None]
    assert value_at(xs, ys, 0.5) is None
    assert value_at(xs, ys, 1.0) == (10.0, 10.0)
    assert value_at(xs, ys, 4.9) == (3.0, 4.0)  # a bucket's min and max
    assert value_at(xs, ys, 9.0) is None  # a gap


# --- the widget ---------------------------------------------------------------------------


def _label_words(lines: list[str]) -> set[str]:
    """The words written on the label rows, curve and marker cells left out."""
    rows = [line[GUTTER:] for line in lines[1:1 + LABEL_ROWS]]
    words = {w for row in rows for w in re.split(r"[\s┊]+", row)}
    return {"".join(c for c in w if c not in BRAILLE) for w in words} - {""}


def _forks(ids: list[str], gap: float) -> list[str]:
    def scenario(chart: LossChart) -> None:
        xs, ys = decay(1000)
        markers = [(100.0 + gap * n, f"fork {run}") for n, run in enumerate(ids)]
        chart.set_data([Series("base", xs, ys)], markers, "step")

    return run_chart((80, 24), scenario)[1]


def test_forks_close_together_print_every_label_whole() -> None:
    ids = ["df2n7y", "7jfa7f", "q3k8mz"]
    lines = _forks(ids, 4.0)
    text = "\n".join(lines)
    for run in ids:  # the pair (and a third) apart, each whole
        assert f"fork {run}" in text
    assert _label_words(lines) == {"fork", *ids}
    # More forks than rows: each label whole, shortened or left to the legend, never
    # written into another.
    many = ["df2n7y", "7jfa7f", "q3k8mz", "x9v2pa", "b4c5d6", "e7f8g9"]
    words = _label_words(_forks(many, 3.0))
    assert words <= {"fork", *many} and len(words - {"fork"}) >= LABEL_ROWS


def test_a_window_and_a_cursor_are_drawn_and_read_out() -> None:
    xs, ys = decay(1000)

    def scenario(chart: LossChart) -> None:
        chart.set_data([Series("a1b2c3 base", xs, ys)], [(250.0, "fork d4e5f6")], "step",
                       window=(200.0, 300.0), cursor=249.6)

    _, lines = run_chart((80, 24), scenario)
    frame = PlotFrame(200.0, 300.0, GUTTER, 80 - GUTTER)
    col = GUTTER + frame.column_of(249.6)
    assert lines[0].startswith(" step 249 ")
    assert f"a1b2c3 base {ys[248]:.4g}" in lines[0]  # x = 249.0 is the 249th point
    assert sum(line[col] == "│" for line in lines[1:-1]) >= 10
    assert "249" in lines[-1][col - 2: col + 2]
    ticks = [int(t) for t in lines[-1][GUTTER:].split() if t.isdigit()]
    assert ticks and all(200 <= t <= 300 for t in ticks) and ticks[0] <= 210
