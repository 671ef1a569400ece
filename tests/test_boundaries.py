"""Import boundaries between the process groups of ``engine`` and the TUI.

``engine`` is grouped by the process each part runs in (see engine/*/__init__.py):

- ``common`` and ``rundir`` are shared by every process, so they import no other group
  (``rundir`` may use ``common``);
- the run side (``engine.run``, and ``traintop``, which user scripts import) never
  imports the server, so a training process never loads the daemon's store or sockets;
- the TUI talks to the daemon only through ``engine.client`` and ``engine.common``;
- only the TUI imports textual, and only the run side imports torch.

The static checks read every import statement, including those inside functions, so a
lazy import cannot slip past; the last tests import the real modules and look at
``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "tui", "traintop")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module named by an import statement anywhere in ``module``'s source."""
    path = _sources()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # ``from engine.server import store`` imports the module engine.server.store
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in _sources())
    return frozenset(names)


def _ours(name: str) -> str | None:
    """The longest module of this repository that ``name`` is or lies in."""
    while name:
        if name in _sources():
            return name
        name = name.rpartition(".")[0]
    return None


def reachable(module: str) -> set[str]:
    """The modules of this repository that ``module`` can import, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(m for m in map(_ours, imports_of(current)) if m is not None)
    return seen


def _in(module: str, *groups: str) -> bool:
    return any(module == g or module.startswith(g + ".") for g in groups)


def _modules(*groups: str) -> Iterator[str]:
    return (m for m in _sources() if _in(m, *groups))


def _breaches(modules: Iterator[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module in modules
        for name in imports_of(module)
        if _in(name, *forbidden)
    )


ENGINE_GROUPS = ("engine.common", "engine.rundir", "engine.server", "engine.run",
                 "engine.client")


def test_every_engine_module_lies_in_a_group() -> None:
    loose = [m for m in _modules("engine") if m != "engine" and not _in(m, *ENGINE_GROUPS)]
    assert loose == []


def test_the_shared_groups_import_no_process_group() -> None:
    assert _breaches(_modules("engine.common"), (*ENGINE_GROUPS[1:], "tui", "traintop")) == []
    assert _breaches(_modules("engine.rundir"), (*ENGINE_GROUPS[2:], "tui", "traintop")) == []


def test_the_run_side_never_reaches_the_server() -> None:
    for module in _modules("engine.run", "traintop"):
        server = sorted(m for m in reachable(module) if _in(m, "engine.server", "tui"))
        assert server == [], f"{module} reaches {server}"


def test_the_tui_uses_only_the_client_and_the_protocol() -> None:
    allowed = ("engine.client", "engine.common")
    breaches = sorted(
        f"{module} imports {name}"
        for module in _modules("tui")
        for name in imports_of(module)
        if _in(name, "engine") and not _in(name, *allowed)
    )
    assert breaches == []


def test_only_the_tui_imports_textual() -> None:
    assert _breaches(_modules("engine", "traintop"), ("textual", "rich")) == []


def test_only_the_run_side_imports_torch() -> None:
    outside = (m for m in _sources() if not _in(m, "engine.run", "traintop"))
    assert _breaches(outside, ("torch",)) == []


def test_the_checks_see_a_lazy_import() -> None:
    """The walker reads imports inside functions too (the CLI imports rebuild lazily)."""
    assert "engine.server.rebuild" in imports_of("engine.client.cli") or any(
        "engine.server.rebuild" in imports_of(m) for m in _modules("engine.client.cli")
    )


def _modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=ROOT)
    return set(out.stdout.split())


def test_the_daemon_and_the_cli_load_neither_textual_nor_torch() -> None:
    loaded = _modules_after(
        "import engine.server.daemon, engine.server.service, engine.server.supervisor, "
        "engine.client.cli, engine.client.client"
    )
    assert "textual" not in loaded
    assert "torch" not in loaded  # the daemon stays light; only workers import torch


def test_the_tui_loads_no_torch_and_no_server() -> None:
    loaded = _modules_after("import tui.app, tui.main")
    assert "textual" in loaded
    assert "torch" not in loaded
    assert not [m for m in loaded if _in(m, "engine.server", "engine.run")]
