"""The TUI's own file in the state directory (``tui.json``): what it showed last.

The TUI writes it as the view changes and reads it when it starts, so a new
session (after an SSH drop, or tomorrow) opens where the last one left off. It
is a client's file: the daemon neither reads nor writes it, and it is not in the
store. Written whole and atomically (0600); a file that cannot be read or is not
a JSON object is reported in one line and otherwise ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.rundir.paths import StatePaths, state_home, write_json_atomic

MAX_VIEW_FILE = 1 << 20  # a saved view is a few hundred bytes; a huge file is not one


class ViewFileError(Exception):
    """The saved view could not be read (one line, with the path)."""


def view_file(home: Path | None) -> Path:
    """Where the TUI of state directory ``home`` (None: the default one) keeps its view."""
    return StatePaths(home if home is not None else state_home()).tui_view


def read_view(home: Path | None) -> dict[str, Any] | None:
    """The saved view of ``home``'s TUI; None if there is none yet.

    Raises ViewFileError when the file exists but cannot be read or is not a JSON object.
    """
    path = view_file(home)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_VIEW_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ViewFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_VIEW_FILE:
        raise ViewFileError(f"{path} is over {MAX_VIEW_FILE} bytes: not a saved view")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViewFileError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ViewFileError(f"{path} holds {type(data).__name__}, not a saved view")
    return data


def write_view(home: Path | None, view: dict[str, Any]) -> None:
    """Save ``view`` for the next start (atomically, 0600); OSError if it cannot be."""
    write_json_atomic(view_file(home), view)
