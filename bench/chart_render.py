"""How long does a loss-chart frame take?  Run: ``.venv/bin/python bench/chart_render.py``.

Three runs of N points each (N = 1e3, 1e5, 1e6) in a 200x50 LossChart, smoothing 0.6,
inside a real Textual app. For each N, milliseconds for:

- ``repaint``: all 50 lines from the strip cache (no change since the last frame);
- ``relayout``: a new layout at the same data, as after a resize or a log-scale toggle
  (smoothing cached; one min/max pass over each visible range);
- ``new data``: the first frame after set_data with new lists (cleaning + smoothing);
- ``naive``: the baseline, the same layout with every point binned by a Python loop
  (per-point work each frame, no bisection, no C-level min/max over slices);
- ``cursor``: a new layout with the cursor's column and its readout in the legend;
- ``zoomed``: a new layout of the last 1k points' window with the cursor in it (the
  chart is handed all N points here; the app hands it only the window's, from the daemon).

The ratio is naive / relayout, measured in this same run.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402

from tui.chart_math import MinMax  # noqa: E402
from tui.widgets.chart_layout import ChartLayout  # noqa: E402
from tui.widgets.loss_chart import LossChart, Series  # noqa: E402

WIDTH, HEIGHT, RUNS, SMOOTHING = 200, 50, 3, 0.6


def make_series(n: int) -> list[Series]:
    """RUNS noisy decaying curves of n points."""
    xs = [float(x) for x in range(n)]
    out = []
    for r in range(RUNS):
        ys: list[float | None] = [
            2.0 * math.exp(-4.0 * x / n) + 0.3 + 0.05 * r + 0.1 * math.sin(x * 0.7 + r)
            for x in range(n)
        ]
        out.append(Series(f"run{r}", xs, ys))
    return out


class NaiveLayout(ChartLayout):
    """The same chart, binning every point in a Python loop: per-point work each frame."""

    def _buckets(
        self, xs: Sequence[float], ys: list[float | None], x_lo: float, x_hi: float, cols: int
    ) -> tuple[list[MinMax | None], list[bool]]:
        lows: list[float | None] = [None] * cols
        highs: list[float | None] = [None] * cols
        scale = cols / (x_hi - x_lo)
        for x, y in zip(xs, ys, strict=False):
            if y is None or not x_lo <= x <= x_hi:
                continue
            c = min(int((x - x_lo) * scale), cols - 1)
            low, high = lows[c], highs[c]
            lows[c] = y if low is None or y < low else low
            highs[c] = y if high is None or y > high else high
        buckets: list[MinMax | None] = [
            None if lo is None or hi is None else (lo, hi)
            for lo, hi in zip(lows, highs, strict=True)
        ]
        return buckets, [False] * cols


def best_ms(func: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls, in milliseconds."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


class BenchApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart()


async def main() -> None:
    app = BenchApp()
    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        chart = app.query_one(LossChart)
        chart.smoothing = SMOOTHING
        await pilot.pause()
        width, height = chart.size
        print(f"LossChart {width}x{height}, {RUNS} runs, smoothing {SMOOTHING}")
        print(
            f"{'points/run':>10} {'repaint':>9} {'relayout':>9} {'new data':>9} "
            f"{'naive':>10} {'naive/relayout':>15} {'cursor':>8} {'zoomed':>8}"
        )
        for n in (1_000, 100_000, 1_000_000):
            series = make_series(n)
            repeat = 5 if n < 1_000_000 else 2

            def new_data(series: list[Series] = series, n: int = n) -> None:
                chart.set_data(
                    [Series(s.label, list(s.xs), list(s.ys)) for s in series],
                    [(n / 2, "fork")],
                    "step",
                )
                chart.render_line(0)

            new_ms = best_ms(new_data, 1 if n == 1_000_000 else repeat)
            relayout_ms = best_ms(lambda: ChartLayout(chart, width, height).strips(), repeat)
            repaint_ms = best_ms(lambda: [chart.render_line(y) for y in range(height)], repeat)
            naive_ms = best_ms(lambda: NaiveLayout(chart, width, height).strips(), repeat)
            shown = chart.series
            chart.set_data(shown, [(n / 2, "fork")], "step", cursor=n * 0.7)
            cursor_ms = best_ms(lambda: ChartLayout(chart, width, height).strips(), repeat)
            chart.set_data(shown, [(n / 2, "fork")], "step", window=(n - 1000.0, float(n)),
                           cursor=n - 500.0)
            zoomed_ms = best_ms(lambda: ChartLayout(chart, width, height).strips(), repeat)
            print(
                f"{n:>10} {repaint_ms:>9.2f} {relayout_ms:>9.1f} {new_ms:>9.1f} "
                f"{naive_ms:>10.1f} {naive_ms / relayout_ms:>14.1f}x "
                f"{cursor_ms:>8.1f} {zoomed_ms:>8.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
