"""Modal dialogs: confirm, fork, new run.

The fork and new-run dialogs edit a config as one text field per key and
hand back ``key=value`` overrides; the daemon checks them, and a refusal is
shown inside the dialog, which stays open so the user can correct it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from engine.client.events import RunInfo
from engine.client.sweep_plan import fork_variants
from engine.common.checkpoint_every import CheckpointEvery
from engine.common.early_stop import StopRule
from engine.common.pbt import NOTHING_TO_PERTURB, PbtRule, SweepRule, axes_of
from engine.common.sweep import SweepError, parse_tokens

# Submits a request; returns None on success or the one-line reason it was refused.
Submit = Callable[[dict[str, Any]], Awaitable[str | None]]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no, with the consequences spelled out."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "No"),
        Binding("y", "confirm", "Yes"),
    ]

    def __init__(self, title: str, body: str, confirm_label: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.title_text, self.body, self.confirm_label = title, body, confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="confirm")
                yield Button("Cancel (n)", id="cancel")

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class ChoiceDialog(ModalScreen[str]):
    """One of a few actions, each with its key, or none (``""``: cancel, ``n``, escape),
    with the consequences spelled out."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,n", "cancel", "No")]

    def __init__(self, title: str, body: str, choices: list[tuple[str, str]]) -> None:
        """``choices``: (key, label) each, the first the main one (shown red)."""
        super().__init__(classes="dialog")
        self.title_text, self.body, self.choices = title, body, choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                for n, (key, label) in enumerate(self.choices):
                    yield Button(f"{label} ({key})", variant="error" if n == 0 else "warning",
                                 id=f"choice-{key}", name=key)
                yield Button("Cancel (n)", id="cancel")

    def on_key(self, event: events.Key) -> None:
        if event.key in (key for key, _ in self.choices):
            event.stop()
            self.dismiss(event.key)

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.name or "")

    def action_cancel(self) -> None:
        self.dismiss("")


class ConfigForm(Vertical):
    """One labelled input per config key (the dialog's fields scroll as one)."""

    DEFAULT_CSS = """
    ConfigForm { height: auto; }
    ConfigForm Horizontal { height: auto; }
    ConfigForm Label { width: 16; padding: 1 1 0 0; }
    ConfigForm Input { width: 1fr; }
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = dict(config)

    def compose(self) -> ComposeResult:
        for key, value in self.config.items():  # the workload's own order: steps, lr first
            with Horizontal():
                yield Label(key)
                yield Input(_text(value), id=f"cfg-{key}", name=key)

    def first_field(self) -> Input | None:
        """The field a user most likely changes: ``lr`` if the config has it, else the
        first key the workload declares other than ``steps``."""
        keys = list(self.config)
        key = "lr" if "lr" in keys else next((k for k in keys if k != "steps"), None)
        key = key or next(iter(keys), None)
        return next((f for f in self.query(Input) if f.name == key), None)

    def overrides(self, only_changed: bool) -> list[str]:
        result = []
        for field in self.query(Input):
            key = field.name or ""
            if not only_changed or field.value != _text(self.config.get(key)):
                result.append(f"{key}={field.value}")
        return result


class FormDialog(ModalScreen[str | None]):
    """Shared frame of the fork and new-run dialogs: an error line and two buttons."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Start"),
    ]

    submit_label = "Start"  # what the submit button says

    def __init__(self, submit: Submit) -> None:
        super().__init__(classes="dialog")
        self.submit = submit

    def compose(self) -> ComposeResult:
        # The fields scroll between the title and the buttons, which stay in sight
        # whatever the terminal's height (80x24 with a long config).
        with Vertical(id="dialog-box"):
            yield Label(self.title_text(), id="dialog-title")
            with Vertical(id="dialog-foot"):  # docked: laid out before the fields
                yield from self.verdict()
                yield Static("", id="dialog-error")
                with Horizontal(id="dialog-buttons"):
                    yield Button(f"{self.submit_label} (ctrl+s)", variant="primary", id="start")
                    yield Button("Cancel (esc)", id="cancel")
            with VerticalScroll(id="dialog-fields"):
                yield from self.fields()

    def title_text(self) -> str:
        """The dialog's title line."""
        raise NotImplementedError

    def fields(self) -> ComposeResult:
        """The dialog's fields, in the scrolling part."""
        raise NotImplementedError

    def verdict(self) -> ComposeResult:
        """What the form will do (how many runs start), kept in sight above the buttons."""
        yield from ()

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _value(self, field: str) -> str:
        """The text of the form's ``Input`` of id ``field``."""
        return self.query_one(f"#{field}", Input).value

    def recovery(self) -> dict[str, Any]:
        """What ``recovery_fields`` say, as ``start`` takes it; SweepError if unreadable."""
        return {"checkpoint_every": self._value("every").strip() or None,
                "retries": whole_number(self._value("retries"), "retries")}

    @on(Button.Pressed, "#start")
    def action_submit(self) -> None:
        self._send()

    @on(Input.Submitted)
    def _submit_on_enter(self) -> None:
        self._send()

    @work(exclusive=True)
    async def _send(self) -> None:
        try:
            params = self.params()
        except SweepError as exc:  # a field that cannot be read (not a whole number)
            self.query_one("#dialog-error", Static).update(f"[red]{exc}[/]")
            return
        error = await self.submit(params)
        if error is None:
            self.dismiss("started")
        else:
            self.query_one("#dialog-error", Static).update(f"[red]{error}[/]")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


ONE_FORK = "[b]1 fork[/b] will start"


class ForkDialog(FormDialog):
    """Fork a run: its config pre-filled; changed values become the overrides. A value
    written as a list (``1e-4,3e-4``), or a random axis with trials, makes one fork per
    value, all from one checkpoint; the dialog says how many before anything starts."""

    def __init__(self, run: RunInfo, submit: Submit) -> None:
        super().__init__(submit)
        self.run = run

    def title_text(self) -> str:
        return f"Fork {self.run.id} ({self.run.name}) at step {self.run.step}"

    def on_mount(self) -> None:
        field = self.query_one(ConfigForm).first_field()
        if field is not None:
            field.focus()

    def fields(self) -> ComposeResult:
        yield Static("Change any value; the fork starts from the parent's current step. "
                     "A list (1e-4,3e-4) or log(LO..HI) with trials makes several forks.")
        yield ConfigForm(self.run.config, id="config")
        yield from field("trials", Input(placeholder="forks drawn from random values", id="trials"))
        yield from rule_fields()
        yield from field("name", Input(placeholder="automatic", id="name"))

    def verdict(self) -> ComposeResult:
        yield Static(ONE_FORK, id="fork-count")

    def _count(self) -> str:
        try:
            variants, rule = fork_plan(self.params())
        except SweepError as exc:
            return f"[red]{exc}[/]"
        if variants is None:
            return ONE_FORK
        judged = "" if rule is None else f", judged by {rule.label}"
        return f"[b]{len(variants)} forks[/b] will start, from one checkpoint{judged}"

    @on(Input.Changed)
    def _recount(self) -> None:
        self.query_one("#fork-count", Static).update(self._count())

    def params(self) -> dict[str, Any]:
        return {
            "run": self.run.id,
            "overrides": self.query_one(ConfigForm).overrides(only_changed=True),
            "trials": self._value("trials"),
            "early_stop": self._value("early-stop"),
            "pbt": self._value("pbt"),
            "name": self._value("name").strip() or None,
        }


def fork_plan(form: dict[str, Any]) -> tuple[list[list[str]] | None, SweepRule | None]:
    """What the fork dialog's form asks for: each fork's overrides (None: one fork) and
    the rule that judges them; SweepError (one line) if it cannot be done."""
    variants = fork_variants(form["overrides"], whole_number(form["trials"], "trials"))
    rule = sweep_rule_of(form["early_stop"], form["pbt"], form["overrides"])
    if rule is not None and variants is None:
        raise SweepError(f"{rule.label} judges forks made together: give a list of values "
                         "(1e-4,3e-4) or a random axis with trials")
    return variants, rule


def field(label: str, widget: Widget) -> ComposeResult:
    """One row of a form: its label, then its widget."""
    with Horizontal(classes="field"):
        yield Label(label)
        yield widget


def rule_fields() -> ComposeResult:
    """The fields that judge a sweep's (or forks') runs: ASHA or PBT, both left empty."""
    yield from field("early stop", Input(
        placeholder="off, or a first rung in steps (ASHA)", id="early-stop"))
    yield from field("pbt", Input(
        placeholder="off, or a round every N steps (population based)", id="pbt"))


def sweep_rule_of(early_stop: str, pbt: str, tokens: list[str]) -> SweepRule | None:
    """What the form asks to judge the runs by: early stopping from a first rung in steps
    (ASHA, as ``--early-stop GRACE``), PBT with a round every so many steps (as ``--pbt
    INTERVAL``, perturbing the axes ``tokens`` sweep, but seeds), or None, both left
    empty; SweepError if wrong."""
    grace, interval = whole_number(early_stop, "early stop"), whole_number(pbt, "pbt")
    if grace is not None and interval is not None:
        raise SweepError("runs are judged by early stopping or by PBT, not both")
    try:
        if grace is not None:
            return StopRule(grace)
        if interval is None:
            return None
        moved = axes_of(parse_tokens(tokens))
        if not moved:
            raise SweepError(NOTHING_TO_PERTURB.removeprefix("--"))
        return PbtRule(interval, axes=moved)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def recovery_fields(like: RunInfo | None = None) -> ComposeResult:
    """How often new runs checkpoint and how often they are retried (``like``'s own)."""
    every = CheckpointEvery.from_wire(like.checkpoint_every) if like else None
    yield from field("checkpoints", Input(
        every.text() if every else "", placeholder="none; every N steps, or 10m", id="every"))
    yield from field("retries", Input(
        str(like.retries) if like and like.retries else "",
        placeholder="0: a crash ends it", id="retries"))


def whole_number(text: str, what: str) -> int | None:
    """A whole number typed in ``what``'s field (None: left empty); SweepError if not one."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise SweepError(f"{what}: {text!r} is not a whole number") from None


class AnnotateDialog(FormDialog):
    """A run's tags and note (``e``): only what was changed is sent."""

    submit_label = "Save"

    def __init__(self, run: RunInfo, submit: Submit) -> None:
        super().__init__(submit)
        self.run = run
        # A note of several lines (set with 'traintop note') shows on one line here;
        # it is sent back only if edited.
        self.note_shown = " / ".join((run.note or "").splitlines())

    def title_text(self) -> str:
        return f"Tags and note of {self.run.id} ({self.run.name})"

    def on_mount(self) -> None:
        self.query_one("#tags", Input).focus()

    def fields(self) -> ComposeResult:
        yield Static("Tags are words separated by spaces: '/' and 'traintop ls -t TAG' find "
                     "them. The note shows in the run's details and 'traintop show'.")
        yield from field("tags", Input(
            " ".join(self.run.tags), placeholder="e.g. baseline best", id="tags"))
        yield from field("note", Input(
            self.note_shown, placeholder="what this run tried", id="note"))

    def params(self) -> dict[str, Any]:
        tags = self._value("tags").split()
        note = self._value("note").strip()
        return {
            "run": self.run.id,
            "add": [t for t in tags if t not in self.run.tags],
            "remove": [t for t in self.run.tags if t not in tags],
            "note": None if note == self.note_shown.strip() else note,
        }


class MoreTrialsDialog(FormDialog):
    """More trials for a searched sweep (``N`` on its row), as ``traintop sweep --more``."""

    submit_label = "Add"

    def __init__(self, sweep: str, made: int, search: Mapping[str, Any], submit: Submit) -> None:
        super().__init__(submit)
        self.sweep = sweep
        self.made = made
        self.search = search

    def title_text(self) -> str:
        return f"More trials for search {self.sweep}"

    def on_mount(self) -> None:
        self.query_one("#more", Input).focus()

    def fields(self) -> ComposeResult:
        yield Static(f"It has made {self.made} of its {self.search['trials']} trials; the "
                     "next ones learn from every trial it ran. Kills and failures before "
                     "now no longer hold it back.")
        yield from field("more trials", Input("10", id="more"))
        yield from field("at a time", Input(str(self.search["startup"]), id="at-a-time"))

    def params(self) -> dict[str, Any]:
        more = whole_number(self._value("more"), "more trials")
        if more is None:
            raise SweepError("more trials: how many, 1 or more")
        return {"sweep": self.sweep, "trials": more,
                "startup": whole_number(self._value("at-a-time"), "at a time")}


class WordsDialog(FormDialog):
    """One field of names, typed apart by spaces or commas (each kept once, in order):
    its ``field`` is both the input's id and the key of ``params``."""

    heading = ""
    help_text = ""
    label = ""
    placeholder = ""
    field = ""

    def __init__(self, words: tuple[str, ...], submit: Submit) -> None:
        super().__init__(submit)
        self.words = words

    def title_text(self) -> str:
        return self.heading

    def on_mount(self) -> None:
        self.query_one(f"#{self.field}", Input).focus()

    def fields(self) -> ComposeResult:
        yield Static(self.help_text)
        yield from field(self.label, Input(
            " ".join(self.words), placeholder=self.placeholder, id=self.field))

    def params(self) -> dict[str, Any]:
        text = self._value(self.field).replace(",", " ")
        return {self.field: tuple(dict.fromkeys(text.split()))}


class ColumnsDialog(WordsDialog):
    """The values shown as columns of their own (``a``), named as ``traintop ls -c`` names
    them; empty: none."""

    submit_label = "Show"
    heading = "Columns"
    help_text = ("Config keys or metrics, each a column after the table's own: a metric "
                 "shows its latest value, min:KEY or max:KEY its lowest or highest. "
                 "'o' sorts by them too.")
    label = "columns"
    placeholder = "e.g. lr batch max:acc"
    field = "columns"


class GroupDialog(WordsDialog):
    """How ``G`` groups the runs on the chart: by the config keys named, or (none) by
    every config value but the seeds."""

    submit_label = "Group"
    heading = "Group the chart's runs"
    help_text = ("Runs alike are drawn as one curve, their mean, in a band from the "
                 "lowest to the highest. Empty: alike in every config value but the "
                 "seeds (keys ending in 'seed'). Keys: alike in those (W&B's group by), "
                 "whatever else differs. Enter groups; G again ungroups.")
    label = "group by"
    placeholder = "e.g. lr batch (empty: all but seeds)"
    field = "group-by"


class NewRunDialog(FormDialog):
    """Start a run: a built-in workload or a file, its config, a name and a device."""

    def __init__(
        self,
        workloads: dict[str, dict[str, Any]],
        describe: Callable[[str], Awaitable[dict[str, Any] | str]],
        submit: Submit,
        retry: RunInfo | None = None,
    ) -> None:
        """``retry``: a run whose workload and config fill the form (edit and retry)."""
        super().__init__(submit)
        self.workloads = workloads
        self.describe = describe
        self.retry = retry
        self.workload = retry.workload if retry else next(iter(workloads), "")

    def title_text(self) -> str:
        retry = self.retry
        return f"Retry {retry.id} ({retry.name}) with changes" if retry else "New run"

    def fields(self) -> ComposeResult:
        builtin = self.workload in self.workloads
        with Horizontal(classes="field"):
            yield Label("workload")
            yield Select(
                [(name, name) for name in self.workloads],
                # A retried run of a file: no built-in is picked, the file is.
                value=self.workload if builtin else Select.NULL,
                allow_blank=not builtin,
                id="builtin",
            )
        with Horizontal(classes="field", id="file-row"):
            yield Label("or file")
            yield Input("" if builtin else self.workload,
                        placeholder="path/to/train.py[:function]", id="file")
        config = self.retry.config if self.retry else self.workloads.get(self.workload, {})
        yield ConfigForm(config, id="config")
        yield from field("name", Input(placeholder="automatic", id="name"))
        yield from field("device", Input(placeholder="auto: a free GPU, else cpu", id="device"))
        yield from recovery_fields(self.retry)

    @on(Select.Changed, "#builtin")
    async def _pick_builtin(self, event: Select.Changed) -> None:
        if event.value == Select.NULL or str(event.value) == self.workload:
            return  # the value it was given: the form keeps its config (a retry's: the run's)
        self.workload = str(event.value)
        self.query_one("#file", Input).value = ""
        await self._show_config(self.workloads.get(self.workload, {}))

    @on(Input.Changed, "#file")
    def _file_changed(self, event: Input.Changed) -> None:
        spec = event.value.strip()
        if spec and spec != self.workload:  # not the retried run's own file: keep its config
            self._load_file(spec)

    @work(exclusive=True, group="describe")
    async def _load_file(self, spec: str) -> None:
        described = await self.describe(spec)
        error = self.query_one("#dialog-error", Static)
        if isinstance(described, str):
            error.update(f"[yellow]{described}[/]")
            return
        error.update("")
        self.workload = spec
        await self._show_config(described)

    async def _show_config(self, config: Mapping[str, Any]) -> None:
        old = self.query_one(ConfigForm)
        await old.remove()
        await self.query_one("#dialog-fields", VerticalScroll).mount(
            ConfigForm(config, id="config"), after=self.query_one("#file-row")
        )

    def params(self) -> dict[str, Any]:
        name = self._value("name").strip()
        device = self._value("device").strip()
        return {
            "workload": self.workload,
            # A retry sends every value: they are the run's, not the workload's defaults.
            "overrides": self.query_one(ConfigForm).overrides(only_changed=self.retry is None),
            "name": name or None,
            "device": device or None,
            **self.recovery(),
        }
