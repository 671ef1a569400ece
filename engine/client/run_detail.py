"""What a run's detail says, line by line: one source for ``traintop show`` and the TUI.

Each client only lays the lines out (plain columns, or Textual markup); what is
said, in which order and words, is decided here once.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from typing import Any

from engine.client.events import RunDescription, RunInfo
from engine.common.checkpoint_every import CheckpointEvery
from engine.common.format import (
    condition_text,
    duration_text,
    format_bytes,
    format_number,
    shown,
    skipped_text,
)
from engine.common.pbt import sweep_rule
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, exit_text
from engine.common.search import SearchRule


@dataclass(frozen=True)
class DetailLine:
    """A labelled field, a section heading (a label, no text), or a line under a heading."""

    label: str  # "" for a line under the heading above it
    text: str = ""
    alert: bool = False  # something went wrong: a client with colour shows the label in red


def queue_text(run: RunDescription) -> str:
    """Its queue and what it asks of it: ``default, priority 2, after x, 0.5 GPU, peak 3 GiB``."""
    parts = [shown(run.queue)]
    if run.priority:
        parts.append(f"priority {run.priority}")
    if run.after_id:
        parts.append(f"after {run.after_id}")
    if run.gpus:
        parts.append(f"{run.gpus:g} GPU" + ("s" if run.gpus > 1 else ""))
    if run.gpu_peak:
        parts.append(f"GPU memory peak {format_bytes(run.gpu_peak)}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    return "unset" if value is None else shown(format_number(value))


def _lineage(run: RunDescription) -> list[DetailLine]:
    """The forks that led to the run, the oldest first, each with what it changed:
    ``a1b2c3 → 7xk2ab at step 165: lr 0.0147 → 0.0176`` (PBT's schedule, too)."""
    lines = []
    for n, fork in enumerate(run.lineage):
        changed = ", ".join(f"{k} {_value(old)} → {_value(new)}"
                            for k, (old, new) in fork.changes.items()) or "no change"
        lines.append(DetailLine("" if n else "lineage",
                                f"{fork.parent} → {fork.run} at step {fork.step}: {changed}"))
    return lines


def detail_lines(run: RunDescription, resume_hint: str) -> list[DetailLine]:
    """The detail of ``run`` (the daemon's ``get_run`` reply).

    ``resume_hint`` says how this client resumes or forks a failed run from its
    last complete checkpoint (a command, or keys).
    """
    total = f" / {run.total_steps}" if run.total_steps else ""
    state = run.state + (" (memory released)" if run.released else "")
    if run.condition:
        state += f" ({condition_text(run.condition)})"
    lines = [
        DetailLine("run", f"{run.id}  {shown(run.name)}"),
        DetailLine("state", state, alert=bool(run.condition) and run.state != "queued"),
        DetailLine("workload", run.workload),
        DetailLine("device", str(run.device)),
        DetailLine("queue", queue_text(run)),
        DetailLine("step", f"{run.step}{total}"),
    ]
    if run.sweep:
        lines.append(DetailLine("sweep", shown(run.sweep)))
    if run.early_stop:
        with contextlib.suppress(ValueError):  # (a newer daemon's rule: left unsaid)
            rule = sweep_rule(run.early_stop)
            lines.append(DetailLine(rule.label, rule.describe(run.fork_step or 0)))
    if run.search:
        with contextlib.suppress(ValueError):
            search = SearchRule.from_wire(run.search)
            lines.append(DetailLine(search.label, search.describe()))
    if run.tags:
        lines.append(DetailLine("tags", " ".join(shown(t) for t in run.tags)))
    if run.note:  # its first line beside the label, the rest under it
        first, *rest = run.note.splitlines() or [""]
        lines.append(DetailLine("note", shown(first)))
        lines += [DetailLine("", shown(line)) for line in rest]
    if run.parent_id:
        gone = " (since removed)" if run.parent_removed else ""
        lines.append(DetailLine("forked", f"from {run.parent_id} at step {run.fork_step}{gone}"))
    if run.restart_of:
        lines.append(DetailLine("restarts", f"{run.restart_of}, from step 0"))
    lines += _lineage(run)
    if run.children:
        lines.append(DetailLine("forks", ", ".join(run.children)))
    lines += _config(run)
    if run.last:
        values = (
            f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(run.last.items())
        )
        lines.append(DetailLine("last", " ".join(values)))
    if run.best:  # each metric's lowest so far, as ls's BEST is the loss's
        lines.append(DetailLine("lowest", " ".join(
            f"{k}={v:.5g}" for k, v in sorted(run.best.items()))))
    if run.started is not None and run.ended is not None:  # (its last start to its end)
        lines.append(DetailLine("ran", duration_text(max(run.ended - run.started, 0.0))))
    skipped = skipped_text(run.skipped_records, run.skipped_points)
    if skipped:
        lines.append(DetailLine("skipped", skipped))
    if run.divergence_factor != DEFAULT_DIVERGENCE_FACTOR:  # the usual watch goes unsaid
        factor = run.divergence_factor
        lines.append(DetailLine("watch", "no pause for a NaN or spiking loss" if factor is None
                                else f"pauses on a NaN loss or one above {factor:g}x its EMA"))
    recovery = recovery_text(run)
    if recovery:
        lines.append(DetailLine("recovery", recovery))
    said = exit_text(run.exit_reason, run.exit_code)
    if said:
        lines.append(DetailLine("exit", said, alert=run.state == "failed"))
    if run.resume_step is not None:
        lines.append(DetailLine(
            "resume", f"from step {run.resume_step}, its last complete checkpoint ({resume_hint})"
        ))
    missing = "  (missing: deleted?)" if run.dir_missing else ""
    files = [f"{format_bytes(run.size)} of files"] if run.size and not missing else []
    if run.checkpoints_removed is not None:
        files.append("its checkpoints removed")
    size = f"  ({'; '.join(files)})" if files else ""
    lines.append(DetailLine("dir", f"{run.dir}{missing}{size}", alert=bool(missing)))
    count = max(run.event_count, len(run.events))
    latest = f" (the latest {len(run.events)} of {count})" if count > len(run.events) else ""
    lines.append(DetailLine("events" + latest))
    for event in run.events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        lines.append(DetailLine("", f"{when}  {event.state:<9} {event.reason}"))
    if run.stderr_tail:
        lines.append(DetailLine("stderr (tail)", alert=True))
        lines += [DetailLine("", line) for line in run.stderr_tail.splitlines()]
    return lines


def _config(run: RunDescription) -> list[DetailLine]:
    """A wrapped command's command line and loss pattern, or a run's config, a key a line."""
    config = run.config
    if run.kind == "wrapped":
        lines = [DetailLine("command", shlex.join(config["command"]))]
        if config.get("loss_pattern"):
            lines.append(DetailLine("loss", f"read with {config['loss_pattern']!r}"))
        lines += [DetailLine("metric", repr(spec)) for spec in config.get("metric_patterns") or ()]
        if config.get("only_patterns"):
            lines.append(DetailLine("metrics", "only from these patterns"))
        return lines
    keys = sorted(config.items())
    return [DetailLine("config"), *(DetailLine("", f"{k} = {v!r}") for k, v in keys)]


# The width of the label column, in `show` and the TUI's detail alike.
LABEL_WIDTH = 10


def plain_text(lines: list[DetailLine]) -> str:
    """The lines as a terminal without colour shows them: labels in a column."""
    return "\n".join(
        f"{line.label:<{LABEL_WIDTH - 1}} {line.text}" if line.label and line.text
        else line.label or f"  {line.text}"
        for line in lines
    )


def recovery_text(run: RunDescription) -> str:
    """'checkpoints every 10m; 1 of 2 retries used', or '' for a run with neither."""
    every = CheckpointEvery.from_wire(run.checkpoint_every)
    parts = [f"checkpoints {every.describe()}"] if every is not None else []
    if run.retries:
        parts.append(f"{run.retried} of {run.retries} retries used")
    return "; ".join(parts)


def retried_mark(run: RunInfo) -> str:
    """' ↻2' after the state of a run the engine took up again twice after failures
    (``--retries``), '' for one it never did."""
    return f" ↻{run.retried}" if run.retried else ""
