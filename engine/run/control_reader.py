"""The worker's side of ``control.jsonl``: read complete command lines from an offset.

The daemon appends lines like ``{"seq":n,"cmd":"pause","request":null}`` and
nudges the worker with SIGUSR1. A line without its ``\\n`` is still being
written, so it is left for the next read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.rundir.line_tail import read_lines


class ControlReader:
    """Reads new commands from ``control.jsonl``, starting at a byte offset."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset

    def has_new(self) -> bool:
        """Whether the file has grown past what was read (one stat, no read)."""
        try:
            return os.stat(self.path).st_size > self.offset
        except FileNotFoundError:
            return False

    def read_new(self) -> list[dict[str, Any]]:
        """The commands on complete lines after the offset, in file order."""
        read = read_lines(self.path, self.offset)
        self.offset = read.end
        commands: list[dict[str, Any]] = []
        for line in read.lines:
            if not line.strip():
                continue
            try:
                command = json.loads(line)
            except ValueError:
                command = None
            if isinstance(command, dict):
                commands.append(command)
            else:
                shown = line.rstrip(b"\r\n")[:200]
                print(f"traintop: ignored bad control line {shown!r}", file=sys.stderr)
        return commands
