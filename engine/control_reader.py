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
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        commands: list[dict[str, Any]] = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                command = json.loads(line)
            except ValueError:
                command = None
            if isinstance(command, dict):
                commands.append(command)
            else:
                print(f"traintop: ignored bad control line {line[:200]!r}", file=sys.stderr)
        return commands
