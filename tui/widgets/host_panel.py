"""The host panel: CPU per core and in total, memory, swap, load, disk and network rates.

The app pushes telemetry samples (``engine.common.telemetry.Sample``) with
``update_samples``; the panel never fetches anything. Few cores get a small
labelled bar each, several to a line; many cores get one block character each,
its height the core's load, wrapped to the width.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from engine.common.telemetry import HostSample, Sample
from tui.widgets.bars import (
    NA,
    SPARK_BLOCKS,
    TRACK_STYLE,
    bar,
    fraction_of,
    level_style,
    percent_text,
    short_bytes,
    short_rate,
    sparkline,
)
from tui.widgets.sample_panel import SamplePanel

_LABEL_WIDTH = 5  # "CPU  ", "RAM  ", "swap "
_CORE_BAR_WIDTH = 5
_MAX_LABELLED_CORES = 32  # beyond this, labelled bars take too many lines to be worth it
_WIDE = 70  # from this width, related figures share a line


def _core_cell(index: int, percent: float, index_width: int) -> Text:
    """``3 ███░░ 45%``: one core as a labelled mini-bar."""
    cell = Text(f"{index:>{index_width}} ", style=TRACK_STYLE)
    cell.append_text(bar(percent / 100, _CORE_BAR_WIDTH, level_style(percent)))
    cell.append(" " + percent_text(percent), style=level_style(percent))
    return cell


def _core_block(percent: float) -> Text:
    level = round(min(100.0, max(0.0, percent)) / 100 * (len(SPARK_BLOCKS) - 1))
    return Text(SPARK_BLOCKS[level], style=level_style(percent))


def core_lines(per_core: Sequence[float], width: int, max_lines: int) -> list[Text]:
    """The cores in ``width`` columns: labelled bars if they fit ``max_lines``, else blocks."""
    if not per_core:
        return [Text("cores N/A", style=TRACK_STYLE)]
    index_width = len(str(len(per_core) - 1))
    cell_width = index_width + 1 + _CORE_BAR_WIDTH + 5
    per_line = max(1, (width + 2) // (cell_width + 2))
    needed = -(-len(per_core) // per_line)
    if len(per_core) <= _MAX_LABELLED_CORES and needed <= max_lines:
        lines = []
        for start in range(0, len(per_core), per_line):
            line = Text()
            for index in range(start, min(start + per_line, len(per_core))):
                if index > start:
                    line.append("  ")
                line.append_text(_core_cell(index, per_core[index], index_width))
            lines.append(line)
        return lines
    per_line = max(1, width - _LABEL_WIDTH)
    lines = []
    for start in range(0, len(per_core), per_line):
        line = Text("core" if start == 0 else "", style="bold")
        line.pad_right(_LABEL_WIDTH - line.cell_len)
        for percent in per_core[start : start + per_line]:
            line.append_text(_core_block(percent))
        lines.append(line)
    return lines


def _used_line(label: str, used: float | None, total: float | None, bar_width: int) -> Text:
    """``RAM  ████░░░░ 12.0G/64.0G``, coloured by the fraction used."""
    fraction = fraction_of(used, total)
    percent = None if fraction is None else 100 * fraction
    line = Text(f"{label:<{_LABEL_WIDTH}}", style="bold")
    line.append_text(bar(fraction, bar_width, level_style(percent)))
    line.append(f" {short_bytes(used)}/{short_bytes(total)}")
    return line


def _load_text(load: Sequence[float] | None) -> Text:
    figures = " ".join(f"{x:.2f}" for x in load) if load else NA
    line = Text("load ", style="bold")
    line.append(figures)
    return line


def _io_texts(host: HostSample) -> tuple[Text, Text]:
    disk = Text("disk ", style="bold")
    disk.append(f"r {short_rate(host.disk_read_bps)} w {short_rate(host.disk_write_bps)}")
    net = Text("net  ", style="bold")
    net.append(f"rx {short_rate(host.net_rx_bps)} tx {short_rate(host.net_tx_bps)}")
    return disk, net


def _no_gpu_line(status: str | None) -> Text:
    """``GPU  none: no NVIDIA driver (...)``: why no GPU panel shows."""
    line = Text(f"{'GPU':<{_LABEL_WIDTH}}", style="bold")
    line.append(f"none: {status or 'NVML sees no GPU'}", style=TRACK_STYLE)
    return line


class HostPanel(SamplePanel):
    """Live view of the machine: cores, CPU history, memory, load and I/O rates."""

    def update_samples(self, history: Sequence[Sample]) -> None:
        """Show ``history``: telemetry samples oldest first, the last one is now."""
        self._history = history
        self._rebuild()

    def build_lines(self, width: int, height: int) -> list[Text]:
        """The panel's lines for a ``width`` x ``height`` area."""
        if not self._history:
            return [Text("Waiting for telemetry…", style=TRACK_STYLE)]
        last = self._history[-1]
        # The GPU panel hides itself when there is no GPU: the reason is said here.
        hint = [] if last.gpus else [_no_gpu_line(last.gpu_status)]
        host = last.host
        if host is None:
            return [*hint, Text("host: N/A", style=TRACK_STYLE)]
        if height < len(hint) + 3:  # a short terminal's panel: CPU and RAM come first
            lines = self._host_lines(host, width, 0)
            ram = next(line for line in lines if line.plain.startswith("RAM"))
            return [lines[0], ram, *hint][:max(height, 1)]
        return [*hint, *self._host_lines(host, width, height - len(hint))]

    def _host_lines(self, host: HostSample, width: int, height: int) -> list[Text]:
        wide = width >= _WIDE
        cpu = host.cpu_percent
        load = _load_text(host.load_average)
        figure = " " + percent_text(cpu)
        rest = width - _LABEL_WIDTH - len(figure) - (load.cell_len + 2 if wide else 0)
        bar_width = max(1, min(30, rest // 2 if rest >= 14 else rest))
        spark_width = rest - bar_width - 1 if rest >= 14 else 0

        cpu_line = Text(f"{'CPU':<{_LABEL_WIDTH}}", style="bold")
        cpu_line.append_text(bar(None if cpu is None else cpu / 100, bar_width, level_style(cpu)))
        if spark_width:
            history = [None if s.host is None else s.host.cpu_percent for s in self._history]
            cpu_line.append(" " + sparkline(history, spark_width, top=100), style=level_style(cpu))
        cpu_line.append(figure, style=level_style(cpu))

        memory_bar = max(1, min(30, width - _LABEL_WIDTH - 14))
        ram = _used_line("RAM", host.memory_used, host.memory_total, memory_bar)
        swap_total = host.swap_total
        if swap_total == 0:
            swap = Text(f"{'swap':<{_LABEL_WIDTH}}", style="bold")
            swap.append("none", style=TRACK_STYLE)
        else:
            swap = _used_line("swap", host.swap_used, swap_total, memory_bar)
        disk, net = _io_texts(host)

        if wide:
            cpu_line.append("  ").append_text(load)
            tail = [ram, swap, disk.append("   ").append_text(net)]
        else:
            tail = [load, ram, swap, disk, net]
        room = height - 1 - len(tail)
        cores = core_lines(host.cpu_per_core, width, room) if room > 0 else []
        if len(cores) > room:
            return [cpu_line, *tail, *cores]  # the bottom is cut off: let it be cores, not RAM
        return [cpu_line, *cores, *tail]
