"""What the daemon sends a client, as typed objects: runs, metric batches, log text,
telemetry samples and series views, each decoded once where the frame is read.

Every type has a ``from_wire`` classmethod: unknown keys are ignored (a newer
daemon may say more), a missing or mistyped required key raises
``MalformedMessage`` (see ``engine.common.wire``). Past the client, code works
with these types and tells events apart by type, not by topic strings.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from engine.common.output_lines import training_loss_key
from engine.common.protocol import ProtocolError
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, RunState
from engine.common.telemetry import Sample
from engine.common.wire import (
    MalformedMessage,
    decoding,
    wire_dict,
    wire_fields,
    wire_list,
)

__all__ = [
    "EmaSeed",
    "Event",
    "LogText",
    "MalformedMessage",
    "MetricBatch",
    "MetricPoint",
    "ProtocolError",
    "RunDescription",
    "RunEvent",
    "RunInfo",
    "RunRemoved",
    "RunRewound",
    "Sample",
    "SeriesBucket",
    "SeriesView",
    "decode_event",
    "decode_events",
]


@dataclass(frozen=True)
class RunInfo:
    """A run as the daemon lists and announces it: its row, latest values and condition."""

    id: str
    name: str
    state: str  # a RunState value; kept a string so a newer daemon's state still shows
    workload: str
    step: int
    device: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    total_steps: int | None = None
    parent_id: str | None = None
    restart_of: str | None = None  # the run it is a restart of (traintop restart)
    fork_step: int | None = None
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    released: bool = False
    condition: str | None = None  # e.g. "disk full": what needs the user now
    last: dict[str, Any] = field(default_factory=dict)  # latest value of each metric
    kind: str = "train"  # "train" | "attached" | "wrapped" | "imported"
    # Why the run cannot do an action ("fork", "release"), one line each.
    refusals: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    exit_code: int | None = None
    exit_reason: str | None = None
    stderr_tail: str | None = None
    skipped_records: int = 0
    skipped_points: int = 0
    # The multiple of its loss EMA that pauses the run; None: it is never paused for it.
    divergence_factor: float | None = DEFAULT_DIVERGENCE_FACTOR
    diverged: str | None = None  # why its loss was judged diverged, until it resumes
    # Its queue and place in it: higher priority first, then by queue_pos (FIFO).
    queue: str = "default"
    priority: int = 0
    queue_pos: float | None = None
    after_id: str | None = None  # the run it waits for (--after)
    gpus: float | None = None  # GPUs it asks for: a share below 1, else whole GPUs
    gpu_peak: int | None = None  # the most GPU memory it held (bytes), or was said to need
    awaiting: str | None = None  # "checkpoint": a fork waiting for its parent's
    sweep: str | None = None  # the sweep it belongs to
    tags: tuple[str, ...] = ()  # what the user tagged it with, in the order added
    note: str | None = None  # what the user wrote about it
    early_stop: dict[str, Any] | None = None  # its sweep's rule: ASHA's or PBT's
    stopped_early: str | None = None  # why that rule stopped it
    search: dict[str, Any] | None = None  # its sweep's search (TPE): what makes its trials
    checkpoint_every: dict[str, Any] | None = None  # how often it checkpoints on its own
    retries: int = 0  # how many times the engine takes it up again when it fails
    retried: int = 0  # how many of those it has used
    checkpoints_removed: float | None = None  # when its checkpoints were (rm --checkpoints)
    # The lowest value of each metric so far (a ``list_runs`` listing says it; events don't).
    best: dict[str, float] = field(default_factory=dict)
    # The highest value of each metric so far (a listing with ``highest`` says it).
    highest: dict[str, float] = field(default_factory=dict)
    size: int | None = None  # bytes its directory takes on disk (a listing with ``sizes``)
    rate: float | None = None  # running: its steps a second of late, as the daemon saw them

    @classmethod
    def from_wire(cls, data: Any) -> RunInfo:
        """A run from a ``list_runs`` page, a ``runs`` event or a ``start``/``fork`` reply."""
        return cls(**_run_fields(cls, data, "run"))

    def advanced(
        self, last: dict[str, Any], best: dict[str, float], highest: dict[str, float], step: int
    ) -> RunInfo:
        """This run with new latest, lowest and highest values and step: what each batch of
        points changes (500 times a second with 500 live runs). ``dataclasses.replace``
        builds all ~40 fields anew (~20 us); a copy with four fields set takes ~6 us."""
        new = copy.copy(self)
        new.__dict__.update(last=last, best=best, highest=highest, step=step)
        if last.keys() != self.last.keys():
            new.__dict__.pop("loss_key", None)  # a new key may be the loss: found again
        return new

    @cached_property  # asked for by every cell and sort key; ``last`` never changes in place
    def loss_key(self) -> str:
        """The metric that is this run's training loss (``loss``, else e.g. ``train/loss``)."""
        return training_loss_key(self.last) or "loss"

    @property
    def terminal(self) -> bool:
        """Whether the run has ended (an unknown state counts as not ended)."""
        return self.state in RunState.__members__.values() and RunState(self.state).terminal


def metric_values(data: Any, what: str) -> dict[str, float]:
    """A ``{metric: value}`` object as the engine sends each run's lowest or highest
    values; MalformedMessage, naming ``what``, if it is not one."""
    with decoding(what):
        return {str(k): float(v) for k, v in wire_dict(data, what).items()}


def _run_fields(cls: type[Any], data: Any, what: str) -> dict[str, Any]:
    values = wire_fields(cls, data, what)
    for name in ("config", "last", "refusals"):
        if name in values:
            values[name] = dict(wire_dict(values[name], f"{what}'s {name}"))
    for name in ("best", "highest"):
        if name in values:
            values[name] = metric_values(values[name], f"{what}'s {name}")
    if "tags" in values:
        values["tags"] = tuple(str(t) for t in wire_list(values["tags"] or [], f"{what}'s tags"))
    return values


@dataclass(frozen=True)
class RunEvent:
    """One state change of a run: when, to which state, and why."""

    time: float
    state: str
    reason: str


@dataclass(frozen=True)
class ForkChange:
    """One fork in a run's lineage: ``parent`` forked as ``run`` at ``step``, with the
    config keys it changed (``key: (old, new)``, None for a key not set)."""

    parent: str
    run: str
    step: int | None
    changes: dict[str, tuple[Any, Any]]


@dataclass(frozen=True)
class RunDescription(RunInfo):
    """A run as ``get_run`` describes it: the listed run, its forks, latest events,
    the step a failed run can resume from, and its directory."""

    children: tuple[str, ...] = ()
    lineage: tuple[ForkChange, ...] = ()  # the forks that led to it, the oldest first
    events: tuple[RunEvent, ...] = ()
    event_count: int = 0  # all its events; ``events`` holds the latest of them
    resume_step: int | None = None  # a failed run's last complete checkpoint, if any
    dir: str = ""
    dir_missing: bool = False
    parent_removed: bool = False  # forked from a run since removed (``traintop rm``)

    @classmethod
    def from_wire(cls, data: Any) -> RunDescription:
        """A run from a ``get_run`` reply."""
        values = _run_fields(cls, data, "run")
        with decoding("run"):
            values["children"] = tuple(str(c) for c in wire_list(values.get("children", []),
                                                                 "run's forks"))
            values["events"] = tuple(
                RunEvent(**wire_fields(RunEvent, e, "run event"))
                for e in wire_list(values.get("events", []), "run's events")
            )
            values["lineage"] = tuple(
                _fork_change(f) for f in wire_list(values.get("lineage", []), "run's lineage"))
            resume = data.get("resume_point")
            values["resume_step"] = None if resume is None else int(resume["step"])
        return cls(**values)


@dataclass(frozen=True)
class EmaSeed:
    """One run's EMA state from a ``list_runs(smoothing=...)`` listing.

    ``ema`` is ``(accumulator, points counted, last step)``, or None when the run
    has no such metric yet.
    """

    id: str
    ema: tuple[float, int, int] | None = None

    @classmethod
    def from_wire(cls, data: Any) -> EmaSeed:
        """The ``id`` and ``ema`` of a listed run (a brief or a full listing)."""
        values = wire_fields(cls, data, "run's EMA")
        seed = values.get("ema")
        with decoding("run's EMA"):
            ema = None if not seed else (float(seed[0]), int(seed[1]), int(seed[2]))
        return cls(values["id"], ema)


class MetricPoint(NamedTuple):
    """One logged value. A tuple, not a dataclass: batches carry thousands of them."""

    step: int
    key: str
    value: float
    time: float


@dataclass(frozen=True)
class MetricBatch:
    """Points one run stored, in the order they were logged (a ``metrics`` event)."""

    run: str
    points: tuple[MetricPoint, ...]

    @classmethod
    def from_wire(cls, data: Any) -> MetricBatch:
        """A batch from the event's data: ``{"run": id, "points": [[step, key, value, t]...]}``."""
        values = wire_fields(cls, data, "metric batch")
        with decoding("metric batch"):
            points = tuple(
                MetricPoint(int(s), str(k), v, float(t))
                for s, k, v, t in wire_list(values["points"], "metric points")
            )
        return cls(values["run"], points)


@dataclass(frozen=True)
class LogText:
    """Text a run wrote to one of its streams (a ``logs`` event)."""

    run: str
    stream: str  # "stdout" or "stderr"
    text: str

    @classmethod
    def from_wire(cls, data: Any) -> LogText:
        """Log text from the event's data."""
        return cls(**wire_fields(cls, data, "log text"))


class SeriesBucket(NamedTuple):
    """One bucket of a series view: its number, min, max, smoothed value and point count."""

    bucket: int
    vmin: float
    vmax: float
    ema: float | None
    points: int


@dataclass(frozen=True)
class SeriesView:
    """A metric at screen resolution (the ``series`` reply): bucket ``b`` covers
    ``range[0] + b * width`` onwards. Empty (no buckets) before the first point."""

    key: str
    n: int
    extent: tuple[float, float] | None
    range: tuple[float, float] | None
    width: float | None
    buckets: tuple[SeriesBucket, ...]
    tail: tuple[tuple[float, ...], ...] = ()
    ema: tuple[float, int] | None = None

    @classmethod
    def from_wire(cls, data: Any) -> SeriesView:
        """A view from a ``series`` reply."""
        values = wire_fields(cls, data, "series view")
        with decoding("series view"):
            pairs = {
                name: None if values[name] is None else (float(values[name][0]),
                                                          float(values[name][1]))
                for name in ("extent", "range")
            }
            ema = values.get("ema")
            return cls(
                key=values["key"],
                n=int(values["n"]),
                extent=pairs["extent"],
                range=pairs["range"],
                width=None if values["width"] is None else float(values["width"]),
                buckets=tuple(
                    SeriesBucket(int(b), vmin, vmax, smoothed, int(count))
                    for b, vmin, vmax, smoothed, count in wire_list(values["buckets"], "buckets")
                ),
                tail=tuple(tuple(p) for p in wire_list(values.get("tail", []), "tail")),
                ema=None if ema is None else (float(ema[0]), int(ema[1])),
            )


@dataclass(frozen=True)
class RunRemoved:
    """A run removed for good (``traintop rm``): a ``runs`` event that says only its id."""

    id: str


@dataclass(frozen=True)
class RunRewound:
    """A run taken up again from a checkpoint at ``step`` (a retry, a resume of a failed
    run): its points there and after were dropped, so its lowest, highest and latest
    values are these now, not the lowest of what was seen (a ``runs`` event)."""

    id: str
    rewound: int
    best: dict[str, float] = field(default_factory=dict)
    highest: dict[str, float] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: Any) -> RunRewound:
        return cls(**_run_fields(cls, data, "rewound run"))


def _run_event(data: Any) -> RunInfo | RunRemoved | RunRewound:
    if isinstance(data, dict) and data.get("removed") is True:
        return RunRemoved(**wire_fields(RunRemoved, data, "removed run"))
    if isinstance(data, dict) and "rewound" in data:
        return RunRewound.from_wire(data)
    return RunInfo.from_wire(data)


# What a subscription delivers; a client matches on the type.
Event = RunInfo | RunRemoved | RunRewound | MetricBatch | Sample | LogText
_DECODERS: dict[str, Any] = {
    "runs": _run_event,
    "metrics": MetricBatch.from_wire,
    "telemetry": Sample.from_wire,
    "logs": LogText.from_wire,
}


def decode_event(message: dict[str, Any]) -> Event | None:
    """The typed event of an ``{"event": topic, "data": ...}`` frame.

    None for a topic this client does not know (a newer daemon's), which it skips.
    """
    decoder = _DECODERS.get(str(message.get("event")))
    if decoder is None:
        return None
    event: Event = decoder(message.get("data"))
    return event


def decode_events(message: dict[str, Any]) -> list[Event]:
    """The typed events of a frame: one, none (a topic unknown here), or, from a
    ``metrics_batch`` frame (a batch subscription), one per run's points in it."""
    if message.get("event") == "metrics_batch":
        data = wire_dict(message.get("data"), "metrics batch")
        return [MetricBatch.from_wire(batch) for batch in wire_list(data.get("batches"),
                                                                    "metric batches")]
    event = decode_event(message)
    return [] if event is None else [event]


def _fork_change(data: Any) -> ForkChange:
    """A fork of a ``get_run`` reply's lineage."""
    values = wire_fields(ForkChange, data, "fork")
    changes = values["changes"]
    if not isinstance(changes, dict) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in changes.values()
    ):
        raise ValueError("a fork's changes must map keys to [old, new]")
    values["changes"] = {str(k): (pair[0], pair[1]) for k, pair in changes.items()}
    return ForkChange(**values)
