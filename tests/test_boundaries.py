"""Import boundaries: the engine never loads textual, the TUI never loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def _modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(out.stdout.split())


def test_engine_daemon_and_cli_do_not_import_textual_or_torch() -> None:
    loaded = _modules_after(
        "import engine.server.daemon, engine.server.service, engine.server.supervisor, "
        "engine.client.cli, engine.client.client"
    )
    assert "textual" not in loaded
    assert "torch" not in loaded  # the daemon stays light; only workers import torch


def test_tui_does_not_import_torch() -> None:
    loaded = _modules_after("import tui.app, tui.main")
    assert "textual" in loaded
    assert "torch" not in loaded


def test_the_tui_imports_only_the_client_and_common_parts_of_the_engine() -> None:
    allowed = ("engine.client", "engine.common")
    found = []
    for path in sorted((Path(__file__).parent.parent / "tui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            found += [
                f"{path.name}: {name}" for name in names
                if name.split(".")[0] == "engine"
                and not any(name == a or name.startswith(a + ".") for a in allowed)
            ]
    assert found == []
