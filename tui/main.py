"""The ``traintop`` entry point: the TUI with no arguments (and for ``demo``),
the engine's command line otherwise.

Textual is imported only when the TUI opens, so CLI commands stay quick.
When the terminal goes away (SSH dropped: SIGHUP, or end of file / hang-up on
the tty), the TUI process must end at once and not spin on a dead terminal;
a watchdog thread makes sure of that. The runs are never touched.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

HANGUP_EXIT = 129  # 128 + SIGHUP
GRACE_S = 0.5


def _hard_exit_soon(code: int) -> None:
    """Leave within GRACE_S even if the app's own shutdown gets stuck."""
    timer = threading.Timer(GRACE_S, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def watch_terminal(fd: int, on_hangup: Any) -> threading.Thread:
    """Call ``on_hangup`` once ``fd`` reports hang-up or error (the terminal is gone)."""

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLHUP | select.POLLERR | select.POLLNVAL)
        while True:
            events = poller.poll(250)
            if any(
                mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events
            ):
                on_hangup()
                return

    thread = threading.Thread(target=watch, name="terminal-watchdog", daemon=True)
    thread.start()
    return thread


def run_tui(readonly: bool, demo: bool) -> int:
    from engine.client.client import Client

    if demo:
        from engine.client.demo import start_demo

        with Client().connect() as client:
            start_demo(client)

    from tui.app import TraintopApp

    app = TraintopApp(readonly=readonly, demo=demo)

    def hangup(*_: object) -> None:
        _hard_exit_soon(HANGUP_EXIT)
        try:
            app.call_from_thread(app.exit)
        except Exception:
            os._exit(HANGUP_EXIT)

    def on_signal(signum: int, frame: object) -> None:
        _hard_exit_soon(128 + signum)
        app.exit()

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if sys.stdin.isatty():
        watch_terminal(sys.stdin.fileno(), hangup)
    app.run()
    return app.return_code or 0


# The commands that talk to the engine (not ``run``, ``parse``, ``import``, ``gpu``
# and ``engine``, which work without one or manage it).
ENGINE_COMMANDS = frozenset({
    "tui", "--readonly", "demo", "start", "sweep", "diff", "wait", "queue", "move", "ls",
    "show", "pause", "resume", "fork", "restart", "kill", "logs", "export", "top",
})


def start_engine_early(args: list[str]) -> None:
    """Start the engine, if none runs, before the imports of a command that needs it."""
    if args and (args[0] not in ENGINE_COMMANDS or "-h" in args or "--help" in args):
        return
    from engine.client.client import start_early

    start_early()


def main(argv: Sequence[str] | None = None) -> int:
    """``traintop [--readonly]`` opens the TUI; ``traintop demo`` too; else the CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    start_engine_early(args)
    if not args or args[0] in ("--readonly", "tui") or (args[0] == "demo" and _interactive()):
        parser = argparse.ArgumentParser(prog="traintop", description="top for training runs")
        parser.add_argument("mode", nargs="?", choices=["tui", "demo"], default="tui")
        parser.add_argument(
            "--readonly", action="store_true", help="watch only: no start, pause, fork or kill"
        )
        options = parser.parse_args(args)
        return run_tui(options.readonly, options.mode == "demo")
    from engine.client.cli import main as cli_main

    return cli_main(args)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


if __name__ == "__main__":
    sys.exit(main())
