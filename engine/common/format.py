"""Numbers, bytes, names and telemetry as plain text, for the CLI, the TUI and log lines."""

from __future__ import annotations

import difflib
import json
import math
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: the daemon uses this module too, not the client
    from engine.common.telemetry import Sample

# Names longer than this are cut when shown in a table (stores from before names had a limit).
SHOWN_NAME = 60


def shown(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal: control characters escaped, cut to ``limit`` with an ellipsis.

    A run name or metric key comes from users and scripts; an escape sequence in
    one must not reach the terminal as a command.
    """
    safe = "".join(
        c if not unicodedata.category(c).startswith("C") else repr(c)[1:-1] for c in text
    )
    if limit is not None and len(safe) > limit:
        return safe[: limit - 1] + "…"
    return safe


def first_unknown(names: Iterable[str], known: Collection[str]) -> tuple[str, list[str]] | None:
    """The first of ``names`` not among ``known``, with the (up to three) known names
    closest to it, for a "did you mean" hint; None when every name is known."""
    for name in names:
        if name not in known:
            return name, difflib.get_close_matches(name, known, n=3)
    return None


def number_text(value: float) -> str:
    """A float as export writes it: shortest round-trip digits, or ``nan``, ``inf``, ``-inf``."""
    return repr(float(value))  # repr already spells the three non-finite values so


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its ``number_text`` string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else number_text(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """``value`` as strict JSON, for people and other programs.

    JSON has no NaN or infinity: such a float is written as the string
    ``"nan"``, ``"inf"`` or ``"-inf"`` (which ``float()`` reads back).
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare case pays for a copy
        return json.dumps(_strict(value), allow_nan=False)


def format_number(value: Any) -> str:
    """A metric value in at most ~7 characters."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# What each run condition (``get_run``'s ``condition``) means, in a few words.
CONDITIONS = {
    "disk full": "disk full: its points are held in memory until there is room",
}


def condition_text(condition: str) -> str:
    """A run's condition explained, for ``show`` and the TUI's detail."""
    return CONDITIONS.get(condition, condition)


def skipped_text(records: int, points: int) -> str | None:
    """What the engine skipped of a run's spool (malformed records, bad points), said for
    a person; None if nothing."""
    parts = []
    for count, what in ((records, "malformed spool record"), (points, "bad point")):
        if count:
            parts.append(f"{count} {what}{'' if count == 1 else 's'}")
    return ", ".join(parts) or None


def duration_text(seconds: float | None) -> str:
    """A time left as an ETA column shows it: ``45s``, ``2m41s``, ``1h20m``; ``-`` for
    none."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)


def cut_middle(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, both ends kept ('grid-lr…-batch32'):
    the names of a sweep's runs differ at their end."""
    if len(text) <= limit:
        return text
    cut = text.find("…")  # cut once already: cut more around the same place
    left, right = (text[:cut], text[cut + 1:]) if cut >= 0 else (
        text[:len(text) // 2], text[len(text) // 2:])
    keep = limit - 1
    kept_left = min(len(left), keep - min(len(right), keep // 2))
    kept_right = keep - kept_left
    return left[:kept_left] + "…" + (right[len(right) - kept_right:] if kept_right else "")


def fit_columns(header: Sequence[str], rows: Sequence[Sequence[str]], width: int,
                shrinkable: Sequence[tuple[int, int, bool]]) -> list[list[str]]:
    """The table (header first) cut to ``width`` characters as ``format_table`` lays it
    out, by cutting the columns ``shrinkable`` names (index, narrowest, whether to keep
    both ends: a sweep's run names differ at their end), in that order, each no narrower
    than its narrowest; what is still too wide is left to wrap."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    over = sum(widths) + 2 * (len(widths) - 1) - width
    for index, narrowest, ends in shrinkable:
        if over <= 0:
            break
        if index >= len(widths) or widths[index] <= narrowest:
            continue
        to = max(narrowest, widths[index] - over)
        for row in table:
            if len(row[index]) > to:
                row[index] = cut_middle(row[index], to) if ends else row[index][:to - 1] + "…"
        over -= widths[index] - to
        widths[index] = to
    return table


def format_bytes(value: float | None) -> str:
    """Bytes in binary units: ``512 B``, ``3.2 GiB``."""
    if value is None:
        return "N/A"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _na(value: Any, fmt: str = "{:.0f}", suffix: str = "") -> str:
    return "N/A" if value is None else fmt.format(value) + suffix


def gpu_lines(sample: Sample, names: dict[str, str]) -> list[str]:
    """Per GPU: utilization, memory, bandwidth, power against its limit, and who uses it."""
    if not sample.gpus:
        return [f"No GPU found ({sample.gpu_status or 'NVML sees none'})"]
    lines = []
    for gpu in sample.gpus:
        parts = [
            f"GPU {gpu.index}  {gpu.name or 'N/A'}",
            f"util {_na(gpu.utilization_percent, suffix='%')}",
            f"mem {format_bytes(gpu.memory_used)}/{format_bytes(gpu.memory_total)}",
            f"bw {_na(gpu.memory_utilization_percent, suffix='%')}",
            f"power {_na(gpu.power_w)}/{_na(gpu.power_limit_w)} W"
            f" ({_na(gpu.power_percent, suffix='%')})",
            _na(gpu.temperature_c, suffix="C"),
            _na(gpu.sm_clock_mhz, suffix=" MHz"),
            f"fan {_na(gpu.fan_percent, suffix='%')}",
        ]
        lines.append("  ".join(parts))
        for run_id, usage in sorted(sample.runs.items()):
            used = usage.gpu_memory.get(gpu.index)
            if used:
                lines.append(f"    run {run_id} {names.get(run_id, '')}  {format_bytes(used)}")
        for other in sample.others:
            if other.gpu_index == gpu.index:
                lines.append(
                    f"    other pid {other.pid} {other.user or '?'}  "
                    f"{format_bytes(other.used_memory)}  {other.command or ''}".rstrip()
                )
    return lines


def host_lines(sample: Sample) -> list[str]:
    """CPU per core, load, RAM, swap, disk and network rates."""
    host = sample.host
    if host is None:
        return ["host: N/A"]
    cores = " ".join(f"{c:.0f}" for c in host.cpu_per_core)
    load = " ".join(f"{x:.2f}" for x in host.load_average or ())
    return [
        f"CPU {host.cpu_percent:.0f}%  per core [{cores}]  load {load}",
        f"RAM {format_bytes(host.memory_used)}/{format_bytes(host.memory_total)}  "
        f"swap {format_bytes(host.swap_used)}/{format_bytes(host.swap_total)}",
        f"disk r {format_bytes(host.disk_read_bps)}/s w {format_bytes(host.disk_write_bps)}/s"
        f"  net rx {format_bytes(host.net_rx_bps)}/s tx {format_bytes(host.net_tx_bps)}/s",
    ]


def run_usage_rows(sample: Sample, names: dict[str, str]) -> list[list[str]]:
    """Per run: CPU %, RSS, threads, processes and GPU memory over its process tree."""
    rows = []
    for run_id, usage in sorted(sample.runs.items()):
        gpu = sum(v for v in usage.gpu_memory.values() if v)
        rows.append(
            [
                run_id,
                names.get(run_id, ""),
                _na(usage.cpu_percent, suffix="%"),
                format_bytes(usage.rss),
                str(usage.threads),
                str(usage.processes),
                format_bytes(gpu) if usage.gpu_memory else "-",
            ]
        )
    return rows
