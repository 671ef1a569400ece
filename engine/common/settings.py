"""Runs alike but for their seeds: one *setting*, repeated.

The many-runs habit repeats each setting over a few seeds, and then compares
settings, not seeds: ``traintop ls -G`` lists one row a setting (the mean and
spread of its runs), the TUI's ``G`` draws one mean curve a setting. A seed is
any config key whose name ends in ``seed`` (``seed``, ``data_seed``,
``initSeed``). Where runs differ in more than their seeds (an output directory a
run), the settings are named instead by the keys to group ``by`` (W&B's group
by): runs that agree on those are one setting, whatever else differs. Standard
library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from engine.common.config import parse_literal
from engine.common.config_diff import UNSET, comparable, config_diff
from engine.common.format import first_unknown
from engine.common.sweep import short_text


class Configured(Protocol):
    """A run as grouping reads it (the client's ``RunInfo`` is one)."""

    @property
    def workload(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...


R = TypeVar("R", bound=Configured)


def is_seed_key(key: str) -> bool:
    """Whether config key ``key`` only picks a random stream."""
    return key.lower().endswith("seed")


def setting_of(
    workload: str, kind: str, config: Mapping[str, Any], by: Sequence[str] = ()
) -> str:
    """What two runs share when they are one setting: workload, kind and every config
    value but the seeds, or with ``by`` the values of those keys (``1`` and ``1.0``
    alike, as ``traintop diff`` has them)."""
    if by:
        values = [(k, comparable(config.get(k, UNSET))) for k in by]
    else:
        values = sorted((k, comparable(v)) for k, v in config.items() if not is_seed_key(k))
    return repr((workload, kind, values))


def value_text(value: Any) -> str:
    """A config value as a label shows it, short (``3e-4``, ``64``, ``adam``)."""
    if isinstance(value, str):
        value = parse_literal(value)  # a wrapped run's config may hold text numbers
    return short_text(value)


def setting_labels(
    configs: Sequence[Mapping[str, Any]], by: Sequence[str] = ()
) -> list[str]:
    """Each of ``configs`` named by its values that differ from the others', seeds
    aside (with ``by``: of those keys only): ``lr=3e-4 batch=32`` ('' for one that
    differs in nothing)."""
    keys = [k for k in config_diff(configs) if (k in by if by else not is_seed_key(k))]
    return [" ".join(f"{k}={value_text(c[k])}" for k in keys if k in c) for c in configs]


def gather(runs: Iterable[R], by: Sequence[str] = ()) -> list[tuple[list[R], str]]:
    """``runs`` gathered by setting (alike but for their seeds, or alike in the config
    keys ``by``), each where its first run stood, with the values that set it apart from
    the others (``setting_labels`` of the first runs)."""
    members: dict[str, list[R]] = {}
    for run in runs:
        members.setdefault(setting_of(run.workload, run.kind, run.config, by), []).append(run)
    labels = setting_labels([found[0].config for found in members.values()], by)
    return list(zip(members.values(), labels, strict=True))


def unknown_keys(configs: Iterable[Mapping[str, Any]], by: Sequence[str]) -> str | None:
    """Why ``by`` cannot group these runs: a key none of their configs has, with the
    closest ones; None when every key is found."""
    found = first_unknown(by, {k for c in configs for k in c})
    if found is None:
        return None
    key, close = found
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"no run has a config key named {key!r}{hint}"
