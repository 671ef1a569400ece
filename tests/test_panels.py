"""The GPU and host panels in a real Textual app, checked on the lines they draw."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget

from engine.common.telemetry import Sample
from engine.server.telemetry import GpuReader, demo_nvml
from tui.widgets.bars import SPARK_BLOCKS, bar, level_style, short_bytes, sparkline
from tui.widgets.gpu_panel import GpuPanel, short_gpu_name
from tui.widgets.host_panel import HostPanel

GIB = 1024**3
RUN_NAMES = {"a1b2c3": "demo-lr1e-3"}


def host(cores: int = 4, cpu: float = 37.0) -> dict[str, Any]:
    return {
        "cpu_percent": cpu,
        "cpu_per_core": [float(10 * i % 100) for i in range(cores)],
        "load_average": [1.0, 0.8, 0.5],
        "memory_used": 12 * GIB,
        "memory_total": 64 * GIB,
        "swap_used": 0,
        "swap_total": 8 * GIB,
        "disk_read_bps": 1.5 * 1024**2,
        "disk_write_bps": None,
        "net_rx_bps": 5 * 1024**2,
        "net_tx_bps": 2048.0,
    }


def sample(gpu_count: int = 2, cores: int = 4, time: float = 0.0) -> dict[str, Any]:
    """A telemetry sample with demo GPUs, one run on GPU 0 and another user's process."""
    return {
        "time": time,
        "host": host(cores),
        "gpus": [gpu.to_dict() for gpu in GpuReader(demo_nvml(gpu_count)).read()],
        "runs": {
            "a1b2c3": {
                "cpu_percent": 180.0,
                "rss": 3 * GIB,
                "threads": 41,
                "processes": 5,
                "gpu_memory": {"0": int(12.3 * GIB)},
            }
        },
        "others": [
            {
                "gpu_index": 1,
                "pid": 999,
                "used_memory": 2 * GIB,
                "user": "bob",
                "command": "python other.py",
            }
        ],
        "gpu_status": None,
    }


def typed(history: list[dict[str, Any]]) -> list[Sample]:
    """The samples as the TUI gets them: decoded from the daemon's JSON form."""
    return [Sample.from_wire(entry) for entry in history]


class Panels(App[None]):
    """The two panels side by side, as the real app places them."""

    CSS = "Screen { layout: horizontal; } GpuPanel, HostPanel { width: 1fr; }"

    def compose(self) -> ComposeResult:
        yield GpuPanel()
        yield HostPanel()


def drawn(widget: Widget) -> list[str]:
    """The lines the widget draws on screen, trailing blanks removed."""
    height = widget.content_size.height
    return [
        "".join(segment.text for segment in widget.render_line(y)).rstrip() for y in range(height)
    ]


def show(
    history: list[dict[str, Any]], size: tuple[int, int] = (120, 40)
) -> tuple[list[str], list[str]]:
    """Draw ``history`` in both panels at ``size``; return what each drew."""

    async def scenario() -> tuple[list[str], list[str]]:
        app = Panels()
        async with app.run_test(size=size) as pilot:
            app.query_one(GpuPanel).update_samples(typed(history), RUN_NAMES)
            app.query_one(HostPanel).update_samples(typed(history))
            await pilot.pause()
            return drawn(app.query_one(GpuPanel)), drawn(app.query_one(HostPanel))

    return asyncio.run(scenario())


def text(lines: Iterable[str]) -> str:
    return "\n".join(lines)


def test_two_gpus_with_power_runs_and_others() -> None:
    gpu_lines, _ = show([sample(2)])
    screen = text(gpu_lines)
    assert "GPU0 H100 80GB  61°C  1755MHz" in screen
    assert "GPU1 H100 80GB" in screen
    # demo_nvml: GPU 0 draws 620 of 700 W, GPU 1 370 W.
    assert "89% 620/700W" in screen
    assert "53% 370/700W" in screen
    assert "30.0G/80.0G" in screen
    run_line = next(line for line in gpu_lines if "a1b2c3" in line)
    assert run_line.split() == ["a1b2c3", "demo-lr1e-3", "12.3G"]
    assert "other: pid 999 bob 2.0G" in screen
    # Each user is listed under its own GPU.
    assert screen.index("a1b2c3") < screen.index("GPU1") < screen.index("pid 999")


def test_no_gpu_hides_the_gpu_panel_and_the_host_panel_says_why() -> None:
    empty = sample(0)
    empty["gpu_status"] = "no NVIDIA driver (libnvidia-ml.so.1 not found)"
    gpu_lines, host_lines = show([empty])
    assert gpu_lines == []  # no room taken to say there is nothing
    assert host_lines[0] == "GPU  none: no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert any(line.startswith("RAM") for line in host_lines)
    gpu_lines, host_lines = show([sample(1)])
    assert gpu_lines[0].startswith("GPU0") and not host_lines[0].startswith("GPU")


def test_none_fields_render_as_na() -> None:
    blank = sample(1)
    gpu = blank["gpus"][0]
    for key in gpu:
        if key not in ("index", "processes"):
            gpu[key] = None
    blank["host"] = {
        **host(2),
        "disk_read_bps": None,
        "net_rx_bps": None,
        "net_tx_bps": None,
        "load_average": None,
    }
    blank["others"] = [
        {"gpu_index": 0, "pid": 7, "used_memory": None, "user": None, "command": None}
    ]
    gpu_lines, host_lines = show([blank], size=(100, 40))
    assert gpu_lines[0] == "GPU0 N/A  N/A  N/AMHz"
    assert any(line.startswith("util") and line.endswith("N/A") for line in gpu_lines)
    assert any(line.startswith("pwr") and line.endswith("N/A N/A/N/AW") for line in gpu_lines)
    assert any(line.startswith("mem") and line.endswith("N/A/N/A") for line in gpu_lines)
    assert "other: pid 7 ? N/A" in text(gpu_lines)
    screen = text(host_lines)
    assert "load N/A" in screen
    assert "disk r N/A w N/A" in screen
    assert "rx N/A tx N/A" in screen


def test_host_missing_and_waiting() -> None:
    no_host = sample(1)
    no_host["host"] = None
    _, host_lines = show([no_host])
    assert host_lines[0] == "host: N/A"
    gpu_lines, host_lines = show([])
    # No GPU seen yet: the GPU panel waits hidden (it shows with the first GPU sample).
    assert gpu_lines == [] and host_lines[0] == "Waiting for telemetry…"


def test_sparkline_follows_the_history() -> None:
    history = []
    for step in range(30):
        current = sample(1, time=float(step))
        current["gpus"][0]["utilization_percent"] = float(3 * step)
        current["host"]["cpu_percent"] = float(3 * step)
        history.append(current)
    gpu_lines, host_lines = show(history, size=(160, 40))
    for line in (
        next(line for line in gpu_lines if line.startswith("util")),
        next(line for line in host_lines if line.startswith("CPU")),
    ):
        label, _bar, spark, *_figures = line.split()
        assert set(spark) <= set(SPARK_BLOCKS) and len(spark) >= 20, label
        levels = [SPARK_BLOCKS.index(c) for c in spark]
        assert levels == sorted(levels)
        assert levels[-1] > levels[0]


def test_sparkline_downsamples_by_max_and_scales() -> None:
    rising = [float(v) for v in range(100)]
    assert sparkline(rising, 8)[-1] == "█"
    assert list(sparkline(rising, 8)) == sorted(sparkline(rising, 8))
    # A one-sample spike survives merging 100 values into 10 cells.
    spike = [0.0] * 100
    spike[42] = 100.0
    assert sparkline(spike, 10).count("█") == 1
    # Short history is right-aligned, None is a gap, a fixed top scales percentages.
    assert sparkline([50.0, None, 100.0], 5, top=100) == "  ▅ █"
    assert sparkline([], 4) == "    "
    assert sparkline([0.0, 0.0], 2) == "▁▁"
    assert sparkline([1.0], 0) == ""


def test_bar_clamps_and_fills_by_eighths() -> None:
    assert bar(1.7, 10, "red").plain == "█" * 10
    assert bar(-0.5, 10, "green").plain == "░" * 10
    assert bar(None, 4, "green").plain == "░░░░"
    assert bar(0.5, 10, "green").plain == "█" * 5 + "░" * 5
    assert bar(0.25, 2, "green").plain == "▌░"
    assert bar(0.0625, 2, "green").plain == "▏░"
    assert all(bar(f / 7, 9, "red").cell_len == 9 for f in range(-3, 11))
    assert [span.style for span in bar(0.5, 4, "yellow").spans] == ["yellow", "bright_black"]


def test_colours_are_named_ansi_by_threshold() -> None:
    assert [level_style(p) for p in (0, 49.9, 50, 79.9, 80, 100)] == [
        "green",
        "green",
        "yellow",
        "yellow",
        "red",
        "red",
    ]
    assert level_style(None) == "bright_black"


def test_short_figures() -> None:
    assert short_gpu_name("NVIDIA H100 80GB HBM3") == "H100 80GB"
    assert short_gpu_name("NVIDIA GeForce RTX 4090") == "GeForce RTX 4090"
    assert short_gpu_name(None) == "N/A"
    assert short_bytes(int(12.3 * GIB)) == "12.3G"
    assert short_bytes(None) == "N/A"


def test_host_panel_shows_every_core_and_ram() -> None:
    _, host_lines = show([sample(1, cores=4)], size=(120, 40))
    screen = text(host_lines)
    for core, percent in enumerate(host(4)["cpu_per_core"]):
        assert f"{core} " in screen and f"{percent:3.0f}%" in screen
    assert "RAM  " in screen and "12.0G/64.0G" in screen
    assert "swap " in screen and "0B/8.0G" in screen
    assert "load 1.00 0.80 0.50" in screen
    assert "r 1.5M/s w N/A" in screen and "rx 5.0M/s tx 2.0K/s" in screen
    assert "37%" in next(line for line in host_lines if line.startswith("CPU"))


def test_many_cores_get_one_block_each() -> None:
    _, host_lines = show([sample(1, cores=96)], size=(80, 24))
    core_rows = [line for line in host_lines if line.startswith(("core", "     "))]
    blocks = sum(sum(c in SPARK_BLOCKS for c in line) for line in core_rows)
    assert blocks == 96


def test_eight_gpus_in_a_short_pane_go_compact() -> None:
    history = [sample(8)]
    for gpu in history[0]["gpus"]:  # demo_nvml's later GPUs draw negative power
        gpu["power_w"], gpu["power_percent"] = 350.0, 50.0
    gpu_lines, _ = show(history, size=(80, 12))
    rows = [line for line in gpu_lines if line.startswith("GPU")]
    assert [row.split()[0] for row in rows] == [f"GPU{i}" for i in range(8)]
    assert all("pwr 50%" in row for row in rows)
    # Tall enough for blocks: each GPU gets its title line and four bars.
    gpu_lines, _ = show(history, size=(200, 60))
    assert sum(line.startswith("GPU") for line in gpu_lines) == 8
    assert sum(line.startswith("util") for line in gpu_lines) == 8
    # Too short even for one line each: the rest is counted, not cut silently.
    gpu_lines, _ = show(history, size=(80, 5))
    assert gpu_lines[-1] == "… 4 more GPUs"


@pytest.mark.parametrize("size", [(80, 24), (200, 60), (40, 24), (40, 6), (12, 3)])
def test_layouts_fit_their_width(size: tuple[int, int]) -> None:
    history = []
    for step in range(300):
        current = sample(2, cores=16, time=float(step))
        current["gpus"][0]["utilization_percent"] = float(step % 100)
        history.append(current)
    gpu_lines, host_lines = show(history, size=size)
    width = size[0] // 2
    assert gpu_lines[0].startswith("GPU0")
    assert host_lines[0].startswith("CPU")
    # Nothing wrapped: every line the panel built is no wider than its column.
    app_lines = gpu_lines + host_lines
    assert all(len(line) <= width for line in app_lines)


def test_a_narrow_column() -> None:
    """The panels alone in a 20-column pane, as when docked beside the runs table."""

    class Narrow(App[None]):
        CSS = "GpuPanel, HostPanel { width: 20; height: 1fr; }"

        def compose(self) -> ComposeResult:
            yield GpuPanel()
            yield HostPanel()

    history = [copy.deepcopy(sample(2, cores=8)) for _ in range(5)]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        app = Narrow()
        async with app.run_test(size=(20, 60)) as pilot:
            gpu_panel = app.query_one(GpuPanel)
            gpu_panel.update_samples(typed(history), RUN_NAMES)
            app.query_one(HostPanel).update_samples(typed(history))
            await pilot.pause()
            narrow = drawn(gpu_panel), drawn(app.query_one(HostPanel))
            # A resize lays the panel out again for its new size.
            gpu_panel.styles.width = 100
            await pilot.pause()
            return *narrow, drawn(gpu_panel)

    gpu_lines, host_lines, wide_lines = asyncio.run(scenario())
    assert gpu_lines[0].startswith("GPU0 H100")
    assert any(line.startswith("RAM") for line in host_lines)
    assert all(len(line) <= 20 for line in gpu_lines + host_lines)
    assert "a1b2c3 demo-lr1e-3 12.3G" in text(wide_lines)
    assert "a1b2c3 demo-lr1e-3 12.3G" not in text(gpu_lines)


def test_bars_keep_ansi_colours_on_screen() -> None:
    """The drawn bars use the terminal's own 16 colours: red for GPU0 at 90 %, yellow at 60 %."""

    async def scenario() -> list[int | None]:
        app = Panels()
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.query_one(GpuPanel)
            panel.update_samples(typed([sample(2)]), RUN_NAMES)
            await pilot.pause()
            numbers = []
            for y in range(panel.content_size.height):
                segments = list(panel.render_line(y))
                if segments and segments[0].text.startswith("util"):
                    color = segments[1].style.color if segments[1].style else None
                    assert color is not None and color.is_system_defined
                    numbers.append(color.number)
            return numbers

    assert asyncio.run(scenario()) == [1, 3]  # ANSI red, yellow
