"""The workload registry: clear one-line errors, no user code run, no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.run.workloads.registry import (
    BUILTIN_DEFAULTS,
    WorkloadError,
    load_train,
    normalize_spec,
    workload_defaults,
)

GOOD = """
CONFIG = {"steps": 5, "lr": 0.1, "layers": [1, 2]}
raise SystemExit("parsing must never execute the file")

def train(run):
    pass

def other(run):
    pass
"""


def test_builtin_defaults_are_copies() -> None:
    defaults = workload_defaults("synthetic")
    assert defaults == BUILTIN_DEFAULTS["synthetic"]
    defaults["steps"] = 1
    assert BUILTIN_DEFAULTS["synthetic"]["steps"] == 200
    assert workload_defaults("charlm")["d_model"] == 96


def test_file_spec_defaults_without_running_it(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(GOOD)
    assert workload_defaults(str(script)) == {"steps": 5, "lr": 0.1, "layers": [1, 2]}
    assert workload_defaults(f"{script}:other")["steps"] == 5
    assert normalize_spec(str(script)) == f"{script.resolve()}:train"
    assert normalize_spec("charlm") == "charlm"
    assert normalize_spec("job.py:other", cwd=tmp_path) == f"{script.resolve()}:other"
    assert normalize_spec(str(script), cwd="/elsewhere") == f"{script.resolve()}:train"
    with pytest.raises(WorkloadError, match="unknown workload"):
        normalize_spec("nosuch")


def test_file_without_config_has_empty_defaults(tmp_path: Path) -> None:
    script = tmp_path / "bare.py"
    script.write_text("def train(run):\n    pass\n")
    assert workload_defaults(str(script)) == {}


@pytest.mark.parametrize(
    ("source", "spec_suffix", "message"),
    [
        (None, "", "unknown workload 'nosuch'"),
        (None, "missing.py", "workload file not found"),
        ("def train(run):\n    x = (\n", "", "syntax error in"),
        ("def helper(run):\n    pass\n", "", "defines no top-level function train()"),
        ("def train(run):\n    pass\n", ":fit", "defines no top-level function fit()"),
        ("CONFIG = dict(a=1)\ndef train(run):\n    pass\n", "", "must be a literal dict"),
        ("CONFIG = [1]\ndef train(run):\n    pass\n", "", "must be a literal dict"),
    ],
)
def test_bad_specs_give_one_clear_line(
    tmp_path: Path, source: str | None, spec_suffix: str, message: str
) -> None:
    if source is None and spec_suffix == "":
        spec = "nosuch"
    elif source is None:
        spec = str(tmp_path / spec_suffix)
    else:
        script = tmp_path / "job.py"
        script.write_text(source)
        spec = str(script) + spec_suffix
    with pytest.raises(WorkloadError) as err:
        workload_defaults(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("def train(run):\n    pass\n\nx = = 1\n")
    with pytest.raises(WorkloadError, match="line 4"):
        workload_defaults(str(script))


def test_load_train_imports_sibling_modules(tmp_path: Path) -> None:
    (tmp_path / "helpers_for_job.py").write_text("VALUE = 42\n")
    script = tmp_path / "job.py"
    script.write_text(
        "import helpers_for_job\n\ndef train(run):\n    return helpers_for_job.VALUE\n"
    )
    assert load_train(str(script))(None) == 42  # type: ignore[arg-type]


def test_registry_does_not_import_torch() -> None:
    code = (
        "import sys, engine.run.workloads.registry as r; r.workload_defaults('charlm'); "
        "print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
