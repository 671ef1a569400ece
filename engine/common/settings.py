"""Runs alike but for their seeds: one *setting*, repeated.

The many-runs habit repeats each setting over a few seeds, and then compares
settings, not seeds: ``traintop ls -G`` lists one row a setting (the mean and
spread of its runs), the TUI's ``G`` draws one mean curve a setting. A seed is
any config key whose name ends in ``seed`` (``seed``, ``data_seed``,
``initSeed``). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.common.config import parse_literal
from engine.common.config_diff import comparable, config_diff
from engine.common.sweep import short_text


def is_seed_key(key: str) -> bool:
    """Whether config key ``key`` only picks a random stream."""
    return key.lower().endswith("seed")


def setting_of(workload: str, kind: str, config: Mapping[str, Any]) -> str:
    """What two runs share when they are one setting: workload, kind and every config
    value but the seeds (``1`` and ``1.0`` alike, as ``traintop diff`` has them)."""
    values = sorted((k, comparable(v)) for k, v in config.items() if not is_seed_key(k))
    return repr((workload, kind, values))


def value_text(value: Any) -> str:
    """A config value as a label shows it, short (``3e-4``, ``64``, ``adam``)."""
    if isinstance(value, str):
        value = parse_literal(value)  # a wrapped run's config may hold text numbers
    return short_text(value)


def setting_labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each of ``configs`` named by its values that differ from the others', seeds
    aside: ``lr=3e-4 batch=32`` ('' for one that differs in nothing)."""
    keys = [k for k in config_diff(configs) if not is_seed_key(k)]
    return [" ".join(f"{k}={value_text(c[k])}" for k in keys if k in c) for c in configs]
