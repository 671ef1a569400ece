"""What does ``G`` (runs alike but for their seeds as one mean curve) cost a frame?

Run: ``.venv/bin/python bench/group_band.py``.

A sweep of 64 runs (16 settings by 4 seeds) on a 200x50 chart, each run's curve as
the daemon's view gives it (800 buckets: min, max and the smoothed value each). For
one frame after new views came in, milliseconds for:

- ``overlay``: the baseline, laying out the 64 curves as they are (``G`` off);
- ``grouped``: making the 16 groups' means and bands (``seed_groups.group_series``)
  and laying out those 16 curves (``G`` on);
- ``band only``: making the 16 means and bands alone;
- ``cached``: ``G`` on, a frame where no view changed (the ``BandCache`` hit).

Printed as ratios to the baseline, measured in this same run (best of REPEATS).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402

from tui.seed_groups import BandCache, RunGroup, group_series  # noqa: E402
from tui.widgets.chart_layout import ChartLayout  # noqa: E402
from tui.widgets.loss_chart import LossChart, Series  # noqa: E402

WIDTH, HEIGHT, SETTINGS, SEEDS, BUCKETS, REPEATS = 200, 50, 16, 4, 800, 7


def view_series(setting: int, seed: int) -> Series:
    """One run's curve as ``chart_feed.series_from_view`` makes it: min/max pairs and the
    smoothed value at each bucket's middle."""
    xs: list[float] = []
    ys: list[float | None] = []
    curve_xs: list[float] = []
    curve_ys: list[float | None] = []
    for b in range(BUCKETS):
        x = (b + 0.5) * 10.0
        centre = 2.0 * math.exp(-3.0 * b / BUCKETS) + 0.1 * setting + 0.02 * math.sin(b + seed)
        xs += [x, x]
        ys += [centre - 0.05, centre + 0.05]
        curve_xs.append(x)
        curve_ys.append(centre)
    return Series(f"s{setting}-{seed}", xs, ys, curve=(curve_xs, curve_ys), x_half=5.0)


def best_ms(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart()


async def measure() -> dict[str, float]:
    runs = [[view_series(s, seed) for seed in range(SEEDS)] for s in range(SETTINGS)]
    groups = [RunGroup(tuple(m.label for m in members), f"setting {s} ({SEEDS} runs)")
              for s, members in enumerate(runs)]
    app = ChartApp()
    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        chart = app.query_one(LossChart)
        chart.smoothing = 0.6
        await pilot.pause()
        width, height = chart.content_size

        def lay_out(series: list[Series]) -> None:
            chart.set_data(series, [], "step")
            chart._smoothed.clear()  # new views: the chart cleans its lists again
            ChartLayout(chart, width, height).strips()

        overlay = [s for members in runs for s in members]

        def bands() -> list[Series]:
            return [group_series(members, g.label, BUCKETS)
                    for g, members in zip(groups, runs, strict=True)]

        cache = BandCache()

        def cached() -> list[Series]:
            return [cache.series(g, members, BUCKETS, False, None)
                    for g, members in zip(groups, runs, strict=True)]

        cached()  # filled once: a still chart then hits it
        return {
            "overlay": best_ms(lambda: lay_out(overlay)),
            "grouped": best_ms(lambda: lay_out(bands())),
            "band only": best_ms(bands),
            "cached": best_ms(cached),
        }


def main() -> int:
    results = asyncio.run(measure())
    base = results["overlay"]
    print(f"{SETTINGS * SEEDS} runs ({SETTINGS} settings x {SEEDS} seeds), {BUCKETS} buckets "
          f"each, {WIDTH}x{HEIGHT} chart; best of {REPEATS}")
    for name, ms in results.items():
        print(f"  {name:<10} {ms:8.2f} ms   x{ms / base:.2f} of overlay")
    return 0


if __name__ == "__main__":
    sys.exit(main())
