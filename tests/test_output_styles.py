"""The output of real training scripts, one sample per style, read into exact series.

Each ``tests/data/output_styles/NAME.log`` is a short sample written in the style of a
well-known script or library; ``NAME.expected.json`` is every series it must give (name:
[[step, value], ...]) and nothing else: config echoes, argument dumps and validation lines
stored as the training loss are what this guards against.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.output_metrics import MetricParser

STYLES = Path(__file__).resolve().parent / "data" / "output_styles"
SAMPLES = sorted(STYLES.glob("*.log"))


def series_of(text: str, parser: MetricParser | None = None) -> dict[str, list[list[float]]]:
    """Every point the parser gives for ``text``, grouped into series in logging order."""
    parser = parser or MetricParser()
    series: dict[str, list[list[float]]] = {}
    for step, key, value in parser.feed(text) + parser.finish():
        series.setdefault(key, []).append([step, value])
    return series


def test_the_corpus_has_a_dozen_styles() -> None:
    assert len(SAMPLES) >= 12
    assert all(s.with_suffix(".expected.json").exists() for s in SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_each_style_gives_exactly_its_series(sample: Path) -> None:
    expected = json.loads(sample.with_suffix(".expected.json").read_text())
    assert series_of(sample.read_text(encoding="utf-8")) == expected


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_steps_never_go_backwards(sample: Path) -> None:
    parser = MetricParser()
    steps = [p[0] for p in parser.feed(sample.read_text(encoding="utf-8")) + parser.finish()]
    assert steps == sorted(steps)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_chunking_does_not_change_what_is_read(sample: Path) -> None:
    # A pipe hands the shim output in pieces of any size: one byte at a time gives the same.
    text = sample.read_text(encoding="utf-8")
    parser = MetricParser()
    points = [p for ch in text for p in parser.feed(ch)] + parser.finish()
    whole = MetricParser()
    assert points == whole.feed(text) + whole.finish()


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.text(max_size=80), max_size=8),
    stream=st.sampled_from(["stdout", "stderr"]),
)
def test_arbitrary_text_never_crashes_the_parser(chunks: list[str], stream: str) -> None:
    parser = MetricParser(metric_patterns=["acc=acc (\\S+)"])
    points = [p for chunk in chunks for p in parser.feed(chunk, stream)] + parser.finish()
    for step, key, value in points:
        assert isinstance(step, int) and step >= 0 and isinstance(key, str)
        assert isinstance(value, float)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789/[], |:=.-epochstrainvalossbatches\r\n{}'\"%", max_size=60),
            st.sampled_from([line + "\n" for s in SAMPLES for line in s.read_text().splitlines()]),
        ),
        max_size=12,
    )
)
def test_mixed_training_lines_never_crash_or_step_back(chunks: list[str]) -> None:
    parser = MetricParser()
    steps = [p[0] for chunk in chunks for p in parser.feed(chunk)] + [
        p[0] for p in parser.finish()
    ]
    assert steps == sorted(steps) and all(s >= 0 for s in steps)
