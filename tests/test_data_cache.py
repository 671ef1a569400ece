"""charlm's prepared text is cached under the state directory, per text, and changes nothing."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TERMINAL, Engine

TINY = ["steps=6", "batch=4", "block=16", "layers=1", "d_model=16", "heads=2", "seed=1"]


def finished_losses(engine: Engine, *args: str) -> dict[int, float]:
    result = engine.cli("start", "charlm", *TINY, *args, "--device", "cpu", "--json")
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    return engine.losses(run_id)


def test_the_encoded_text_is_built_once_per_text_and_trains_the_same(
    engine: Engine, tmp_path: Path
) -> None:
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    built = finished_losses(engine, f"text={text}")
    cached = list(engine.paths.cache.glob("charlm-*.pt"))
    assert len(cached) == 1
    written = cached[0].stat().st_mtime_ns

    assert finished_losses(engine, f"text={text}") == built  # read from the cache
    assert cached[0].stat().st_mtime_ns == written

    cached[0].write_bytes(b"not a torch file")  # damaged: rebuilt, same numbers
    assert finished_losses(engine, f"text={text}") == built

    text.write_text("a different text altogether, so a different vocabulary\n" * 200)
    changed = finished_losses(engine, f"text={text}")
    assert len(list(engine.paths.cache.glob("charlm-*.pt"))) == 2
    assert changed != built
