"""The sweep dialog (``S``): a workload, the axes as ``traintop sweep`` takes them, trials,
seed, a search (TPE), early stopping or PBT, queue and name; it says how many runs it
will start before anything starts.

The axes are expanded by ``engine.common.sweep``, the same code as the CLI's, so
``lr=1e-4,3e-4 batch=32,64`` or ``lr=log(1e-4..1e-2)`` with trials mean the same
runs in both. A bad spec is said in the dialog, in the CLI's words.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select, Static

from engine.client.sweep_plan import drawn_keys, fresh_seed
from engine.common.search import SearchRule, first_trials, search_from
from engine.common.sweep import (
    MAX_SWEEP_RUNS,
    SweepError,
    SweepSpec,
    expand,
    parse_tokens,
    run_count,
)
from tui.screens.dialogs import (
    FormDialog,
    Submit,
    field,
    recovery_fields,
    rule_fields,
    whole_number,
)

AXES_HINT = "lr=1e-4,3e-4 batch=32,64   or   lr=log(1e-4..1e-2) with trials"


def form_search(axes: str, trials: str, seed: str, method: str) -> SearchRule | None:
    """The search the dialog asks for (``method``: empty for none), as ``traintop sweep
    --search`` makes it; SweepError (one line) if it cannot be one."""
    if not method:
        return None
    count = whole_number(trials, "trials")
    if count is not None and count > MAX_SWEEP_RUNS:
        raise SweepError(f"this search makes {count} runs, over the limit of {MAX_SWEEP_RUNS} "
                         "(the CLI starts it with --yes)")
    try:
        return search_from(_spec(axes), method, count, seed=whole_number(seed, "seed") or 0)
    except ValueError as exc:
        raise SweepError(str(exc).removeprefix("search: ").replace("--trials N", "trials")
                         ) from None



def _spec(axes: str) -> SweepSpec:
    try:
        tokens = shlex.split(axes)  # quotes as a shell takes them: opt="adam w"
    except ValueError as exc:
        raise SweepError(f"axes: {exc}") from None
    if not tokens:
        raise SweepError(f"no axes: write them as {AXES_HINT}")
    return parse_tokens(tokens)


def expand_axes(axes: str, trials: str = "", seed: str = "",
                method: str = "") -> list[list[str]]:
    """Each run's ``key=value`` overrides from the dialog's text, as ``traintop sweep``
    would make them (with a search: its first trials); SweepError (one line) if the
    text makes none."""
    search = form_search(axes, trials, seed, method)
    if search is not None:
        return first_trials(search)
    spec = _spec(axes)
    count = run_count(spec, whole_number(trials, "trials"))
    if count > MAX_SWEEP_RUNS:
        raise SweepError(f"this sweep makes {count} runs, over the limit of {MAX_SWEEP_RUNS} "
                         "(the CLI starts it with --yes)")
    return expand(spec, whole_number(trials, "trials"), whole_number(seed, "seed") or 0)


def form_seed(axes: str, trials: str, method: str, configs: Iterable[Mapping[str, Any]]) -> int:
    """The seed a sweep whose seed field is left empty draws with: the first whose draws
    none of ``configs`` (its workload's runs) has, as ``traintop sweep`` without --seed."""
    try:
        keys = drawn_keys(_spec(axes))
    except SweepError:
        return 0  # (the dialog says why)
    if not keys:
        return 0
    return fresh_seed(lambda seed: expand_axes(axes, trials, str(seed), method), keys, configs)


def count_text(axes: str, trials: str, seed: str, method: str = "") -> str:
    """The dialog's verdict line: how many runs will start, or why none can."""
    try:
        runs = expand_axes(axes, trials, seed, method)
    except SweepError as exc:
        return f"[red]{exc}[/]"
    later = int(trials) - len(runs) if method else 0
    return (f"[b]{len(runs)} run{'s' if len(runs) != 1 else ''}[/b] will start"
            + (f", {later} more as they end" if later else ""))


class SweepDialog(FormDialog):
    """Start a sweep: nothing starts until the form is submitted, and then every run."""

    def __init__(self, workloads: dict[str, dict[str, Any]], submit: Submit,
                 filled: dict[str, str] | None = None) -> None:
        super().__init__(submit)
        self.workloads = workloads
        self.filled = filled or {}  # field values to open with (a closer look's)

    def on_mount(self) -> None:
        workload = self.filled.get("workload")
        if workload in self.workloads:
            self.query_one("#builtin", Select).value = workload
        elif workload:
            self.query_one("#file", Input).value = workload
        for name in ("axes", "trials"):
            if name in self.filled:
                self.query_one(f"#{name}", Input).value = self.filled[name]

    def title_text(self) -> str:
        return "New sweep"

    def fields(self) -> ComposeResult:
        first = next(iter(self.workloads), None)
        with Horizontal(classes="field"):
            yield Label("workload")
            yield Select([(name, name) for name in self.workloads], value=first or
                         Select.NULL, allow_blank=first is None, id="builtin")
        yield from field("or file", Input(placeholder="path/to/train.py[:function]", id="file"))
        yield from field("axes", Input(placeholder=AXES_HINT, id="axes"))
        yield from field("trials", Input(placeholder="runs drawn from random axes", id="trials"))
        yield from field("seed", Input(placeholder="new draws, or a number to draw again",
                                       id="seed"))
        yield from field("search", Select(
            [("off: every run starts now", ""), ("tpe: learn where to look", "tpe")],
            value="", allow_blank=False, id="search"))
        yield from rule_fields()
        yield from field("queue", Input(placeholder="default", id="queue"))
        yield from field("name", Input(placeholder="automatic: the workload's", id="name"))
        yield from recovery_fields()

    def verdict(self) -> ComposeResult:
        yield Static(count_text("", "", ""), id="sweep-count")

    @on(Input.Changed, "#axes, #trials, #seed")
    @on(Select.Changed, "#search")
    def _recount(self) -> None:
        text = count_text(self._value("axes"), self._value("trials"), self._value("seed"),
                          self._search())
        self.query_one("#sweep-count", Static).update(text)

    def _search(self) -> str:
        method = self.query_one("#search", Select).value
        return method if isinstance(method, str) else ""

    def params(self) -> dict[str, Any]:
        picked = self.query_one("#builtin", Select).value
        file = self._value("file").strip()
        workload = file or ("" if picked == Select.NULL else str(picked))
        return {
            "workload": workload,
            "axes": self._value("axes"),
            "trials": self._value("trials"),
            "seed": self._value("seed"),
            "search": self._search(),
            "early_stop": self._value("early-stop"),
            "pbt": self._value("pbt"),
            "queue": self._value("queue").strip() or None,
            "name": self._value("name").strip() or None,
            **self.recovery(),
        }
