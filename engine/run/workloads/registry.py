"""Find a workload by name or file and read its default config, without importing torch.

A workload spec is either a built-in name (``charlm``, ``synthetic``) or
``path/to/file.py[:function]`` (the function defaults to ``train``). The daemon
validates specs and config overrides with :func:`workload_defaults`, which only
parses the user's file (``ast``) and never executes it; only the worker runs
user code, through :func:`load_train`.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.run.run_api import Run

# Defaults live here, not in the workload modules, so that reading them never
# imports torch (the daemon must stay light).
BUILTIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "charlm": {
        "steps": 3000,
        "lr": 3e-3,
        "batch": 32,
        "block": 64,
        "layers": 2,
        "d_model": 96,
        "heads": 4,
        "dropout": 0.1,
        "weight_decay": 0.01,
        "seed": 0,
        "warmup": 50,
        "eval_every": 0,
        "text": "",
    },
    "synthetic": {
        "steps": 200,
        "lr": 0.02,  # converges; 0.05 with momentum 0.9 diverges to NaN
        "seed": 0,
        "dim": 16,
        "batch": 32,
        "sleep": 0.0,
        "fail_at": -1,
        "nan_at": -1,  # log a NaN loss at this step (training itself is untouched)
        "spike_at": -1,  # log the loss 1000x too high at this step
        "extra_metrics": 0,
        "print_every": 0,
    },
}


class WorkloadError(Exception):
    """A workload spec that cannot be used; ``str(err)`` is one line for the user."""


def _split_file_spec(spec: str) -> tuple[Path, str]:
    """Split ``file.py:fn`` into the path and the function name (``train`` by default)."""
    path, sep, fn = spec.rpartition(":")
    if sep and fn.isidentifier():
        return Path(path).expanduser(), fn
    return Path(spec).expanduser(), "train"


def _is_file_spec(spec: str) -> bool:
    path, _ = _split_file_spec(spec)
    return path.suffix == ".py" or "/" in spec


def _parse_file(path: Path, fn: str) -> ast.Module:
    """Parse ``path`` and check that it defines top-level function ``fn``."""
    if not path.is_file():
        raise WorkloadError(f"workload file not found: {path}")
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise WorkloadError(
            f"syntax error in {path} line {err.lineno}: {err.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise WorkloadError(f"cannot read workload file {path}: {err}") from None
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if fn not in defined:
        raise WorkloadError(f"{path} defines no top-level function {fn}()")
    return tree


def _config_literal(tree: ast.Module, path: Path) -> dict[str, Any]:
    """The module-level ``CONFIG = {...}`` literal of a parsed file ({} if absent)."""
    config: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "CONFIG" for t in targets):
            continue
        assert node.value is not None
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise WorkloadError(
                f"CONFIG in {path} line {node.lineno} must be a literal dict with string keys"
            )
        config = value  # the last assignment wins, as it would at run time
    return config


def workload_defaults(spec: str) -> dict[str, Any]:
    """The default config of a workload spec; raises :class:`WorkloadError` if unusable."""
    if spec in BUILTIN_DEFAULTS:
        return copy.deepcopy(BUILTIN_DEFAULTS[spec])
    if not _is_file_spec(spec):
        names = ", ".join(sorted(BUILTIN_DEFAULTS))
        raise WorkloadError(
            f"unknown workload {spec!r}: use a built-in ({names}) or path/to/file.py[:function]"
        )
    path, fn = _split_file_spec(spec)
    return _config_literal(_parse_file(path, fn), path)


def normalize_spec(spec: str, cwd: str | Path | None = None) -> str:
    """Built-in names unchanged; file specs as ``/absolute/path.py:function``.

    A relative path is taken from ``cwd`` (the user's directory, which is not
    the daemon's), or from this process's directory when ``cwd`` is None.
    """
    if spec in BUILTIN_DEFAULTS:
        return spec
    if not _is_file_spec(spec):
        workload_defaults(spec)  # raises the "unknown workload" error
    path, fn = _split_file_spec(spec)
    if cwd is not None:
        path = Path(cwd).expanduser() / path  # an absolute path replaces cwd
    return f"{path.resolve()}:{fn}"


def load_train(spec: str) -> Callable[[Run], object]:
    """Import a workload and return its train function (runs user code: worker only)."""
    if spec in BUILTIN_DEFAULTS:
        module = importlib.import_module(f"engine.run.workloads.{spec}")
        fn = "train"
    else:
        path, fn = _split_file_spec(normalize_spec(spec))
        _parse_file(path, fn)  # same clear errors as the daemon gives
        # A unique module name per file, so two workloads named train.py never collide.
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        name = f"traintop_workload_{path.stem}_{digest}"
        # The file's own directory first, so its sibling imports (helpers.py) work.
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise WorkloadError(f"cannot import workload file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    train = getattr(module, fn, None)
    if not callable(train):
        raise WorkloadError(f"{spec}: {fn} is not callable")
    return train  # type: ignore[no-any-return]
