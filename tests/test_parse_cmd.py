"""``traintop parse FILE``: what a wrapped run would record from a saved log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Engine
from tests.test_cli_errors import refused

STYLES = Path(__file__).resolve().parent / "data" / "output_styles"


@pytest.mark.parametrize("style", ["nanogpt", "pytorch_word_lm", "yolo"])
def test_parse_prints_the_series_a_run_would_record(engine: Engine, style: str) -> None:
    result = engine.cli("parse", str(STYLES / f"{style}.log"), "--json")
    assert result.code == 0, result.err
    expected = json.loads((STYLES / f"{style}.expected.json").read_text())
    assert result.json() == {"series": expected}


def test_parse_shows_a_table_of_series(engine: Engine) -> None:
    result = engine.cli("parse", str(STYLES / "nanogpt.log"))
    assert result.code == 0, result.err
    rows = [line.split() for line in result.out.splitlines()]
    assert rows[0] == ["SERIES", "POINTS", "STEPS", "FIRST", "LAST"]
    assert rows[1:] == [
        ["train/loss", "2", "0..250", "4.2874", "1.9648"],
        ["val/loss", "2", "0..250", "4.2823", "2.0612"],
        ["loss", "5", "0..260", "4.2649", "1.9863"],
    ]


def test_parse_applies_metric_patterns_and_only_patterns(engine: Engine) -> None:
    log = str(STYLES / "nanogpt.log")
    result = engine.cli("parse", log, "--json", "--only-patterns", "--metric", r"mfu=mfu (\S+)%")
    assert result.code == 0, result.err
    assert result.json() == {
        "series": {"mfu": [[0, -100.0], [10, 10.51], [20, 10.5], [250, 9.46], [260, 9.57]]}
    }


def test_a_log_read_as_stderr_gives_only_its_bars(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "err.log"
    log.write_text("UserWarning: dropout=0.2\nstep 1 loss 0.5\n 50%|#  | 5/10 [00:01, loss=0.3]\n")
    result = engine.cli("parse", str(log), "--stderr", "--json")
    assert result.json() == {"series": {"loss": [[5, 0.3]]}}


def test_a_log_with_no_progress_says_so(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "config.log"
    log.write_text("batch_size = 64\nn_layer = 4\n")
    result = engine.cli("parse", str(log))
    assert result.code == 0 and result.out.startswith("no metrics")


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["parse", "/no/such/log"], "no such file"),
        (["parse", str(STYLES)], "is a directory"),
        (["parse", str(STYLES / "nanogpt.log"), "--metric", "x=("], "not a valid regex"),
        (["parse", str(STYLES / "nanogpt.log"), "--only-patterns"], "needs --metric"),
    ],
)
def test_parse_mistakes_are_one_line(engine: Engine, argv: list[str], mentions: str) -> None:
    refused(engine, *argv, code=2, mentions=mentions)
