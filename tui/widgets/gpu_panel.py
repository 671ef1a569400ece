"""The GPU panel: per GPU, utilization, power, memory and bandwidth with their recent history.

The app pushes telemetry samples (``engine.common.telemetry.Sample``) with
``update_samples``; the panel never fetches anything. It lays itself out for
the space it is given: a block of bars and sparklines per GPU when every block
fits, one line per GPU when they do not (8 GPUs in a short pane).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from rich.text import Text

from engine.common.telemetry import GpuSample, Sample
from tui.widgets.bars import (
    NA,
    TRACK_STYLE,
    bar,
    fraction_of,
    level_style,
    percent_text,
    short_bytes,
    sparkline,
)
from tui.widgets.sample_panel import SamplePanel

Gpu = GpuSample

_LABEL_WIDTH = 5  # "util ", "pwr  ", "mem  ", "bw   "
_MAX_OTHERS = 3  # other users' processes listed per GPU before "+N more"
_NAME_NOISE = re.compile(r"^NVIDIA\s+|\s+HBM\w*$")


def short_gpu_name(name: str | None) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``H100 80GB``: the vendor and memory type say nothing."""
    return NA if not name else _NAME_NOISE.sub("", name).strip() or name


def _temperature_style(celsius: float | None) -> str:
    if celsius is None:
        return TRACK_STYLE
    return "red" if celsius >= 85 else "yellow" if celsius >= 75 else ""


def _mem_percent(gpu: Gpu) -> float | None:
    fraction = fraction_of(gpu.memory_used, gpu.memory_total)
    return None if fraction is None else 100 * fraction


def _power_text(gpu: Gpu) -> str:
    watts, limit = gpu.power_w, gpu.power_limit_w
    detail = f"{NA if watts is None else f'{watts:.0f}'}/{NA if limit is None else f'{limit:.0f}'}W"
    return f"{percent_text(gpu.power_percent)} {detail}"


def _mem_text(gpu: Gpu) -> str:
    return f"{short_bytes(gpu.memory_used)}/{short_bytes(gpu.memory_total)}"


# Each metric row: label, percent of the GPU it shows, figure printed after the sparkline.
_METRICS: tuple[tuple[str, Callable[[Gpu], float | None], Callable[[Gpu], str]], ...] = (
    ("util", lambda g: g.utilization_percent, lambda g: percent_text(g.utilization_percent)),
    # Power next to utilization: a GPU "100% utilized" by one small kernel at a
    # time draws a fraction of its power, and only the pair shows that.
    ("pwr", lambda g: g.power_percent, _power_text),
    ("mem", _mem_percent, _mem_text),
    (
        "bw",
        lambda g: g.memory_utilization_percent,
        lambda g: percent_text(g.memory_utilization_percent),
    ),
)


class GpuPanel(SamplePanel):
    """Live view of every GPU: bars with sparklines, and which runs hold its memory."""

    _run_names: Mapping[str, str] = {}

    def update_samples(self, history: Sequence[Sample], run_names: Mapping[str, str]) -> None:
        """Show ``history`` (samples oldest first, the last is now); runs named by ``run_names``."""
        self._history = history
        self._run_names = run_names
        # No GPU: the panel goes, and the host panel says why in a line (a third of the
        # side column saying "No GPU found" is space the host's figures can use).
        self.display = bool(history and history[-1].gpus)
        self._rebuild()

    def build_lines(self, width: int, height: int) -> list[Text]:
        """The panel's lines for a ``width`` x ``height`` area."""
        if not self._history:
            return [Text("Waiting for telemetry…", style=TRACK_STYLE)]
        current = self._history[-1]
        gpus = current.gpus
        if not gpus:
            reason = current.gpu_status or "NVML sees no GPU"
            return [Text("No GPU found", style="bold"), Text(str(reason), style=TRACK_STYLE)]
        series = self._series(gpus)
        blocks = [self._block(gpu, series[gpu.index], current, width) for gpu in gpus]
        packed_height = sum(len(block) for block in blocks)
        if packed_height <= height:
            # A blank line between blocks where there is room for one.
            gap = [Text()] if packed_height + len(blocks) - 1 <= height else []
            lines: list[Text] = []
            for block in blocks:
                lines.extend((gap if lines else []) + block)
            return lines
        return self._compact(gpus, series, current, width, height)

    def _series(self, gpus: list[Gpu]) -> dict[int, list[list[float | None]]]:
        """Per GPU index, each metric's values over the history (None where missing)."""
        wanted = {gpu.index for gpu in gpus}
        series: dict[int, list[list[float | None]]] = {
            index: [[] for _ in _METRICS] for index in wanted
        }
        for sample in self._history:
            seen = {gpu.index: gpu for gpu in sample.gpus}
            for index in wanted:
                gpu = seen.get(index)
                for values, (_label, percent, _figure) in zip(series[index], _METRICS, strict=True):
                    values.append(None if gpu is None else percent(gpu))
        return series

    def _title(self, gpu: Gpu, index_width: int) -> Text:
        title = Text(f"GPU{gpu.index:<{index_width}} ", style="bold")
        title.append(short_gpu_name(gpu.name), style="bold")
        temperature = gpu.temperature_c
        title.append("  ")
        title.append(
            NA if temperature is None else f"{temperature:.0f}°C",
            style=_temperature_style(temperature),
        )
        clock = gpu.sm_clock_mhz
        title.append(f"  {NA if clock is None else f'{clock:.0f}'}MHz")
        fan = gpu.fan_percent
        if fan is not None:
            title.append(f"  fan {fan:.0f}%")
        return title

    def _block(
        self, gpu: Gpu, series: list[list[float | None]], current: Sample, width: int
    ) -> list[Text]:
        figures = [figure(gpu) for _label, _percent, figure in _METRICS]
        rest = width - _LABEL_WIDTH - max(len(f) for f in figures) - 2
        bar_width = max(1, min(40, rest // 2 if rest >= 14 else rest))
        spark_width = rest - bar_width - 1 if rest >= 14 else 0
        lines = [self._title(gpu, 1)]
        for (label, percent, _figure), figure, values in zip(
            _METRICS, figures, series, strict=True
        ):
            value = percent(gpu)
            line = Text(f"{label:<{_LABEL_WIDTH}}")
            line.append_text(
                bar(None if value is None else value / 100, bar_width, level_style(value))
            )
            if spark_width:
                line.append(" " + sparkline(values, spark_width, top=100), style=level_style(value))
            line.append(" " + figure)
            lines.append(line)
        lines.extend(self._users(gpu, current))
        return lines

    def _users(self, gpu: Gpu, current: Sample) -> list[Text]:
        """A line per run holding memory on this GPU, then other users' processes."""
        index = gpu.index
        held = [
            (usage.gpu_memory[index], run_id)
            for run_id, usage in current.runs.items()
            if usage.gpu_memory.get(index)
        ]
        lines = []
        for used, run_id in sorted(held, reverse=True):
            line = Text("  ")
            line.append(run_id, style="bold cyan")
            name = self._run_names.get(run_id)
            if name:
                line.append(f" {name}")
            line.append(f" {short_bytes(used)}")
            lines.append(line)
        others = [o for o in current.others if o.gpu_index == index]
        others.sort(key=lambda o: o.used_memory or 0, reverse=True)
        for other in others[:_MAX_OTHERS]:
            line = Text("  other: ", style="magenta")
            line.append(
                f"pid {other.pid} {other.user or '?'} {short_bytes(other.used_memory)}"
            )
            if other.command:
                line.append(f"  {other.command}", style=TRACK_STYLE)
            lines.append(line)
        if len(others) > _MAX_OTHERS:
            lines.append(Text(f"  +{len(others) - _MAX_OTHERS} more others", style="magenta"))
        return lines

    def _compact(
        self,
        gpus: list[Gpu],
        series: Mapping[int, list[list[float | None]]],
        current: Sample,
        width: int,
        height: int,
    ) -> list[Text]:
        """One line per GPU: a utilization bar, then power, memory, temperature and runs."""
        index_width = max(len(str(gpu.index)) for gpu in gpus)
        bar_width = 16 if width >= 70 else 8 if width >= 40 else 5
        two_lines = 2 * len(gpus) <= height
        shown = gpus if len(gpus) <= height else gpus[: max(0, height - 1)]
        lines = []
        for gpu in shown:
            util = gpu.utilization_percent
            line = Text(f"GPU{gpu.index:<{index_width}} ", style="bold")
            line.append_text(
                bar(None if util is None else util / 100, bar_width, level_style(util))
            )
            line.append(" " + percent_text(util), style=level_style(util))
            segments = [
                ("pwr", gpu.power_percent),
                ("mem", _mem_percent(gpu)),
                ("bw", gpu.memory_utilization_percent),
            ]
            for label, percent in segments:
                piece = Text(f" {label}")
                piece.append(percent_text(percent), style=level_style(percent))
                if line.cell_len + piece.cell_len > width:
                    break
                line.append_text(piece)
            temperature = gpu.temperature_c
            extras = [
                Text(
                    f" {NA if temperature is None else f'{temperature:.0f}°C'}",
                    style=_temperature_style(temperature),
                )
            ]
            runs = [
                run_id
                for run_id, usage in current.runs.items()
                if usage.gpu_memory.get(gpu.index)
            ]
            if runs and not two_lines:  # the second line names them
                extras.append(Text(" " + ",".join(sorted(runs)), style="cyan"))
            for piece in extras:
                if line.cell_len + piece.cell_len <= width:
                    line.append_text(piece)
            room = width - line.cell_len - 1
            if room >= 10 and not two_lines:
                line.append(
                    " " + sparkline(series[gpu.index][0], min(room, 40), top=100),
                    style=level_style(util),
                )
            lines.append(line)
            if two_lines:
                history = series[gpu.index][0]
                lines.append(self._second_line(gpu, history, current, index_width + 4, width))
        if len(shown) < len(gpus):
            lines.append(Text(f"… {len(gpus) - len(shown)} more GPUs", style=TRACK_STYLE))
        return lines

    def _second_line(
        self,
        gpu: Gpu,
        util_history: list[float | None],
        current: Sample,
        indent: int,
        width: int,
    ) -> Text:
        """Under a compact GPU line: its utilization history and who holds its memory."""
        util = gpu.utilization_percent
        line = Text(" " * indent)
        line.append(
            sparkline(util_history, max(0, min(24, width - indent - 12)), top=100),
            style=level_style(util),
        )
        for user in self._users(gpu, current):
            line.append(" ")
            line.append_text(user[2:])  # without the block layout's indent
        return line
