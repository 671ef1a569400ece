"""The ``traintop`` command line (the TUI's entry point hands every command here).

- ``parser``: the grammar of every command;
- ``entry``: ``main``, which runs a command and maps errors to exit statuses;
- ``run_actions``: commands that act on runs (start, run, pause, resume, fork, kill, rm, demo);
- ``reads``: commands that only read (ls, show, logs, export, gpu, top);
- ``sweep_cmd``: ``sweep`` and ``start -f FILE``, many runs from one spec or file;
- ``compare_cmd``: commands about several runs at once (diff, wait);
- ``annotate_cmd``: what the user says of runs (tag, note);
- ``engine_cmd``: ``traintop engine start|stop|status|rebuild``;
- ``common``: connecting, waiting on a run and reporting it, shared by the commands.
"""

from engine.client.cli.entry import main

__all__ = ["main"]
