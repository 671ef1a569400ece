"""Telling the user that runs stopped while the app watched: a toast, a bell and a
desktop notification (see ``tui.notify`` for the bytes).

Only what happens live is told: a listing (connecting, reconnecting) replays
states and tells nothing, a pause this app asked for is no news, and a burst of
endings is told once. A sweep's runs that finish are told together, once every run
of the sweep has ended, with what it came to (its best run): a sweep of 500 runs
rings once, not every few seconds all night. Its failures and pauses are told as
they come: those need the user.
"""

from __future__ import annotations

import os

from textual.app import App

from tui.notify import RETRIED, Stop, StopBatch, desktop_wanted, summary, terminal_alert
from tui.state import TuiState

TITLE = "traintop"
TOAST_S = 10.0  # seconds a toast of stopped runs stays: news worth a glance back


class RunNotices(App[None]):
    """Gathers the runs the state saw stop and tells them, a batch at a time."""

    state: TuiState

    def __init__(self) -> None:
        super().__init__()
        self.desktop_notices = desktop_wanted(os.environ)
        self.pauses_sent: set[str] = set()  # runs this app asked to pause, not yet paused
        self._stops = StopBatch()

    def tell_stops(self) -> None:
        """Gather the stops seen since the last call; tell a batch once its burst is over."""
        for run in self.state.take_stopped():
            asked = run.id in self.pauses_sent
            self.pauses_sent.discard(run.id)  # a pause asked for is taken, or overtaken
            if (run.state == "paused" and asked) or (run.state == "finished" and run.sweep):
                continue  # a sweep's run that finished is told with its sweep, below
            self._stops.add(Stop.of(run))
        for sweep in self.state.take_sweeps_ended():  # all at once: no bell a run all night
            self._stops.add(Stop.sweep(sweep, [r for r in self.state.runs.values()
                                               if r.sweep == sweep]))
        batch = self._stops.take_due()
        if batch:
            self._announce(batch)

    def _announce(self, batch: list[Stop]) -> None:
        line = summary(batch)
        failed = any(stop.state in ("failed", RETRIED) for stop in batch)
        self.notify(line, title=TITLE, severity="warning" if failed else "information",
                    timeout=TOAST_S)
        # Written as Textual writes its own OSC 52 (clipboard): through the driver, so
        # it goes out between frames. The headless driver of run_test() drops it.
        if self.desktop_notices and self._driver is not None:
            self._driver.write(terminal_alert(TITLE, line, os.environ))

    def action_toggle_notify(self) -> None:
        self.desktop_notices = not self.desktop_notices
        on = "on" if self.desktop_notices else "off"
        self.notify(f"bell and desktop notifications {on} (toasts stay)")
