"""The TUI at 80x24: every dialog fits with its buttons in sight, the fork dialog's
first focus, and the mouse (click a row, click a button, wheel the table)."""

from __future__ import annotations

import asyncio
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input
from textual.widgets._footer import FooterKey

from tests.conftest import TERMINAL, Engine
from tests.test_tui import screen_of, start, until
from tests.test_tui_compare import _stored_runs
from tui.app import TraintopApp
from tui.screens.detail import RunDetail
from tui.screens.dialogs import (
    AnnotateDialog,
    ChoiceDialog,
    ConfigForm,
    ConfirmDialog,
    ForkDialog,
    NewRunDialog,
)
from tui.screens.diff import ConfigDiff
from tui.screens.help import HelpScreen
from tui.screens.queues import QueuesScreen
from tui.screens.sweep_dialog import SweepDialog
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

SMALL = (80, 24)


def _in_sight(app: App[Any], widget: Widget) -> bool:
    """The widget is on screen, whole, and it is what a click on its middle lands on."""
    region = widget.region
    if not region.area or not app.screen.region.contains_region(region):
        return False
    found, _ = app.screen.get_widget_at(region.x + region.width // 2,
                                        region.y + region.height // 2)
    return found is widget


def test_every_dialog_fits_80x24_and_its_buttons_are_clicked(engine: Engine) -> None:
    done = start(engine, "synthetic", "steps=30", "--name", "done")
    engine.wait_state(done, *TERMINAL)
    live = start(engine, "synthetic", "steps=100000", "sleep=0.05", "--name", "live")
    engine.wait_state(live, "running")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=SMALL) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 2)
            table.select(live)
            forms = (("n", NewRunDialog), ("f", ForkDialog), ("S", SweepDialog),
                     ("e", AnnotateDialog))
            for key, kind in forms:
                await pilot.press(key)
                dialog = await until(pilot, lambda k=kind: isinstance(app.screen, k)
                                     and app.screen)
                await pilot.pause(0.2)
                for button in ("#start", "#cancel"):
                    assert _in_sight(app, dialog.query_one(button, Button)), (key, button)
                assert await pilot.click("#cancel")  # the mouse presses it
                await until(pilot, lambda k=kind: not isinstance(app.screen, k))
            await pilot.press("Q")  # the queues: its keys in sight
            queues = await screen_of(pilot, app, QueuesScreen)
            await pilot.pause(0.2)
            assert _in_sight(app, queues.query_one("#queue-keys"))
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, QueuesScreen))
            await pilot.press("K")
            confirm = await screen_of(pilot, app, ConfirmDialog)
            assert _in_sight(app, confirm.query_one("#confirm", Button))
            assert await pilot.click("#cancel")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
            assert app.state.runs[live].state == "running"

            await pilot.press("space")
            table.select(done)
            await pilot.press("D")  # remove: asked first, its buttons in sight
            choice = await screen_of(pilot, app, ChoiceDialog)
            for button in ("#choice-y", "#choice-c"):
                assert _in_sight(app, choice.query_one(button, Button))
            assert await pilot.click("#cancel")
            await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))
            assert done in app.state.runs
            await pilot.press("space")
            for key, kind in (("d", ConfigDiff), ("enter", RunDetail),
                              ("question_mark", HelpScreen)):
                await pilot.press(key)
                screen = await until(pilot, lambda k=kind: isinstance(app.screen, k)
                                     and app.screen)
                await pilot.pause(0.2)
                box = screen.query_one("#dialog-box")
                assert app.screen.region.contains_region(box.region), key
                await pilot.press("escape")
                await until(pilot, lambda: not isinstance(app.screen, ModalScreen))

    asyncio.run(scenario())


class _Form(App[None]):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        yield ConfigForm(self.config)


def _first_field(config: dict[str, Any]) -> str | None:
    async def scenario() -> str | None:
        app = _Form(config)
        async with app.run_test():
            field = app.query_one(ConfigForm).first_field()
            return None if field is None else field.name

    return asyncio.run(scenario())


def test_the_first_field_is_lr_else_the_first_declared_key_but_steps() -> None:
    assert _first_field({"steps": 10, "seed": 0, "lr": 0.1}) == "lr"
    assert _first_field({"steps": 10, "width": 8, "depth": 2}) == "width"
    assert _first_field({"steps": 10}) == "steps"
    assert _first_field({}) is None


def test_the_fork_dialog_opens_on_lr(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=30")
    engine.wait_state(run_id, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=SMALL) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("f")
            dialog = await screen_of(pilot, app, ForkDialog)
            await until(pilot, lambda: isinstance(app.focused, Input))
            assert app.focused is dialog.query_one("#cfg-lr", Input)
            await pilot.press("tab")  # on to the key after it, not back to steps
            assert isinstance(app.focused, Input) and app.focused.name == "seed"

    asyncio.run(scenario())


def test_the_mouse_selects_a_row_and_the_wheel_scrolls_the_table(engine: Engine) -> None:
    _stored_runs(engine, 14)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=SMALL) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 14)
            await pilot.pause(0.2)
            assert table.size.height - 1 < 14  # the table shows a part of the runs
            assert await pilot.click(RunsTable, offset=(3, 3))  # the third run's row
            assert table.selected_id == table.order[2]
            await until(pilot, lambda: app.shown and app.shown[-1].run_id == table.order[2])
            for _ in range(3):
                await pilot._post_mouse_events([events.MouseScrollDown], RunsTable, (3, 3))
            assert table.scroll_offset.y > 0  # the wheel scrolls the rows, as in htop
            top = round(table.scroll_offset.y)
            assert await pilot.click(RunsTable, offset=(3, 1))  # the first row now shown
            assert table.selected_id == table.order[top]
            for _ in range(3):
                await pilot._post_mouse_events([events.MouseScrollUp], RunsTable, (3, 3))
            assert table.scroll_offset.y < top

    asyncio.run(scenario())


def test_under_100_columns_the_chart_takes_the_width_and_the_panels_go_under_it(
    engine: Engine,
) -> None:
    _stored_runs(engine, 20)  # more than the table shows at 80x24

    def host_lines(host: HostPanel) -> list[str]:
        region = host.content_region
        return [line.plain.split()[0] for line in host.build_lines(region.width, region.height)]

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=SMALL) as pilot:
            chart, host = app.query_one(LossChart), app.query_one(HostPanel)
            await until(pilot, lambda: app.state.telemetry and chart.series)
            await pilot.pause(0.2)
            assert chart.region.width == SMALL[0] and host.region.y > chart.region.y
            # No GPU: no panel for it.
            assert app.query_one(GpuPanel).display == bool(app.state.telemetry[-1].gpus)
            # 24 lines: the panels under the chart keep two lines, CPU and RAM, so the
            # chart keeps 9 lines (it had 6, a plot of two lines, beside a full table).
            assert host_lines(host) == ["CPU", "RAM"]
            assert chart.region.height == 9
            await pilot.resize_terminal(80, 40)  # tall enough: the whole panel again
            await pilot.pause(0.3)
            assert host_lines(host)[:2] == ["GPU", "CPU"]  # why there is no GPU panel
            assert {"RAM", "swap", "disk"} <= set(host_lines(host))
            await pilot.resize_terminal(120, 40)
            await pilot.pause(0.3)
            assert chart.region.width < 100 and host.region.x >= chart.region.right

    asyncio.run(scenario())


def test_the_footer_is_built_once_and_again_only_when_its_keys_change(engine: Engine) -> None:
    """The screen saying its bindings changed, as it does at each focus change and a few
    times while the app starts, leaves the footer's key widgets as they are while the
    keys stay the same; a key turning disabled rebuilds them, greyed."""
    run_id = start(engine, "synthetic", "steps=3")
    engine.wait_state(run_id, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            keys = await until(pilot, lambda: list(app.query(FooterKey)))
            assert {key.description for key in keys} >= {"New", "Pause", "Fork", "Kill"}
            assert not any(key.has_class("-disabled") for key in keys)
            for _ in range(3):  # what a focus change, or the app starting, says
                app.screen.refresh_bindings()
                await pilot.pause(0.1)
            assert list(app.query(FooterKey)) == keys  # the very same widgets
            app.readonly = True  # now the keys that change runs are refused
            app.screen.refresh_bindings()
            rebuilt = await until(pilot, lambda: (now := list(app.query(FooterKey))) != keys
                                  and now)
            greyed = {key.description for key in rebuilt if key.has_class("-disabled")}
            assert {"New", "Pause", "Fork", "Kill"} <= greyed

    asyncio.run(scenario())
