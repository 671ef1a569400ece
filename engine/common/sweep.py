"""Sweeps: a spec of axes expanded into one list of ``key=value`` overrides per run.

Standard library only, so the CLI, the TUI and the engine can all expand a spec.

A spec is made of tokens, as typed after ``traintop sweep WORKLOAD``:

- ``lr=1e-4,3e-4,1e-3`` is a grid axis. Grid axes are crossed: one run per
  combination, the first axis varying slowest.
- ``lr=log(1e-4..1e-2)`` (log-uniform), ``dropout=uniform(0..0.3)`` and
  ``layers=int(2..6)`` (an integer, both ends included) are random axes, sampled
  ``trials`` times from ``random.Random(seed)``: the same seed gives the same runs.
  With grid axes too, every trial is crossed with the whole grid, as Ray Tune's
  ``num_samples`` does: ``trials`` x grid-size runs.
- ``steps=500`` is a fixed override, the same for every run.

Values are read as ``engine.common.config.parse_literal`` reads them; the
workload's own types are applied when a run is started.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.common.config import parse_literal
from engine.common.runs import name_from, unique_name

# More runs than this in one sweep is more likely a typo than a plan; --yes allows it.
MAX_SWEEP_RUNS = 1000
_RANDOM = re.compile(r"^(log|uniform|int)\((.*)\)$", re.DOTALL)
RANDOM_FORMS = "log(LO..HI), uniform(LO..HI) or int(LO..HI)"
_CALL = re.compile(r"([A-Za-z_]\w*)\(.*\)$")  # a value written as a call: name(...)
# Values that span this factor or more are spaced by ratios (a one-decade grid, 1e-3,
# 3e-3, 1e-2): plotted on a log axis, and drawn from a log(..) axis by a closer look.
LOG_SPAN = 10.0


def spans_decades(values: Sequence[float]) -> bool:
    """Whether ``values`` are all positive and span LOG_SPAN or more. The tolerance keeps
    a decade a decade where floats divide to a hair under 10 (3e-4 / 3e-5 =
    9.999999999999998)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPAN * (
        1 - 1e-9)


class SweepError(ValueError):
    """A spec that cannot be expanded; the message is one line naming the bad token."""


@dataclass(frozen=True)
class RandomAxis:
    """A distribution to sample one key from: ``kind`` is log, uniform or int."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random.Random) -> str:
        """One value, as override text (full precision, so the run gets what was drawn)."""
        if self.kind == "int":
            return str(rng.randint(int(self.low), int(self.high)))
        if self.kind == "log":
            return repr(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return repr(rng.uniform(self.low, self.high))

    def text(self) -> str:
        """The axis as it is typed: ``log(0.0001..0.01)``."""
        return f"{self.kind}({self.low!r}..{self.high!r})"


@dataclass
class SweepSpec:
    """What a sweep varies: fixed values, grid axes and random axes, each as value text."""

    fixed: dict[str, str] = field(default_factory=dict)
    grid: dict[str, list[str]] = field(default_factory=dict)
    random: dict[str, RandomAxis] = field(default_factory=dict)

    def keys(self) -> list[str]:
        """Every key the spec sets, fixed ones first."""
        return [*self.fixed, *self.grid, *self.random]

    def replaced_by(self, other: SweepSpec) -> SweepSpec:
        """This spec with every key ``other`` sets taken from ``other`` (whatever its kind)."""
        drop = set(other.keys())
        return SweepSpec(
            {**{k: v for k, v in self.fixed.items() if k not in drop}, **other.fixed},
            {**{k: v for k, v in self.grid.items() if k not in drop}, **other.grid},
            {**{k: v for k, v in self.random.items() if k not in drop}, **other.random},
        )

    def add(self, key: str, kind: str, value: Any, token: str) -> None:
        """Record one axis or fixed value; SweepError if ``key`` is already set."""
        if key in self.keys():
            raise SweepError(f"{token}: {key} is given twice")
        if kind == "fixed":
            self.fixed[key] = value
        elif kind == "grid":
            self.grid[key] = value
        else:
            self.random[key] = value


def split_values(text: str) -> list[str]:
    """``text`` split at its top-level commas (a ``[1,2]`` value stays whole)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _bound(text: str, kind: str, token: str) -> float:
    value = parse_literal(text.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SweepError(f"{token}: {text.strip()!r} is not a finite number")
    if kind == "int" and not isinstance(value, int):
        raise SweepError(f"{token}: int(LO..HI) needs whole numbers, not {text.strip()!r}")
    return value


def parse_random(key: str, text: str, token: str) -> RandomAxis | None:
    """The random axis ``text`` writes, None if it writes none; SweepError if malformed."""
    match = _RANDOM.match(text.strip())
    if match is None:
        return None
    kind, inside = match.groups()
    low_text, sep, high_text = inside.partition("..")
    if not sep:
        raise SweepError(f"{token}: expected {kind}(LO..HI)")
    low, high = _bound(low_text, kind, token), _bound(high_text, kind, token)
    if low > high:
        raise SweepError(f"{token}: the low end {low_text.strip()} is above the high end")
    if kind == "log" and low <= 0:
        raise SweepError(f"{token}: log() needs bounds above 0")
    return RandomAxis(kind, low, high)


def parse_tokens(tokens: Sequence[str]) -> SweepSpec:
    """The spec the command-line tokens write; SweepError naming the first bad one."""
    spec = SweepSpec()
    for token in tokens:
        key, sep, text = token.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(
                f"{token!r}: write key=value, key=V1,V2,... or key={RANDOM_FORMS}"
            )
        axis = parse_random(key, text, token)
        if axis is not None:
            spec.add(key, "random", axis, token)
            continue
        called = _CALL.match(text.strip())
        if called:  # loguniform(1e-3,1e-1), Ray Tune's spelling: not a value, a mistake
            raise SweepError(f"{token}: {called.group(1)}() is not a random axis here; "
                             f"write {key}={RANDOM_FORMS}")
        values = split_values(text)
        if len(values) == 1:
            spec.add(key, "fixed", text, token)
        elif any(not v.strip() for v in values):
            raise SweepError(f"{token}: an empty value in the list")
        else:
            spec.add(key, "grid", _distinct([v.strip() for v in values], token), token)
    return spec


def _distinct(values: list[str], token: str) -> list[str]:
    """A list's values, refused if one is given twice (as written or as a number: 1e-3
    and 0.001): it would make the same run twice."""
    seen: dict[Any, str] = {}
    for value in values:
        parsed = parse_literal(value)
        # (a list or dict value by its text; True apart from 1)
        key = (type(parsed) is bool, parsed) if isinstance(parsed, int | float | str) \
            else value
        if key in seen:
            again = value if seen[key] == value else f"{seen[key]} and {value}"
            raise SweepError(f"{token}: {again} given twice; each value makes a run")
        seen[key] = value
    return values


def run_count(spec: SweepSpec, trials: int | None) -> int:
    """How many runs ``spec`` makes with ``trials``; SweepError if the pair is inconsistent."""
    if spec.random and trials is None:
        key = next(iter(spec.random))
        raise SweepError(f"{key}: a random axis needs --trials N")
    if trials is not None and not spec.random:
        raise SweepError(
            f"--trials {trials}: no random axis to sample (write one as key={RANDOM_FORMS})"
        )
    if trials is not None and trials < 1:
        raise SweepError(f"--trials {trials}: must be at least 1")
    return math.prod(len(v) for v in spec.grid.values()) * (trials or 1)


def expand(
    spec: SweepSpec, trials: int | None = None, seed: int = 0, allow_many: bool = False
) -> list[list[str]]:
    """One list of ``key=value`` overrides per run: each trial crossed with the grid.

    Trials vary slowest, then the grid axes in order (the first slowest);
    fixed values come first in every list. Over ``MAX_SWEEP_RUNS`` runs is
    refused unless ``allow_many``.
    """
    count = run_count(spec, trials)
    if count > MAX_SWEEP_RUNS and not allow_many:
        raise SweepError(
            f"this sweep makes {count} runs, over the limit of {MAX_SWEEP_RUNS} "
            "(pass --yes to start them anyway)"
        )
    rng = random.Random(seed)
    fixed = [f"{k}={v}" for k, v in spec.fixed.items()]
    grid = list(itertools.product(*([f"{k}={v}" for v in vs] for k, vs in spec.grid.items())))
    runs = []
    for _ in range(trials or 1):
        drawn = [f"{k}={axis.sample(rng)}" for k, axis in spec.random.items()]
        runs += [[*fixed, *combination, *drawn] for combination in grid]
    return runs


def short_text(value: Any) -> str:
    """A value as a run name shows it: ``3e-4``, ``0.25``, ``64``, ``true``, ``adam``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value):
        forms = [_compact_exponent(f"{value:.3g}"), _compact_exponent(f"{value:.2e}")]
        return min(forms, key=len)  # the plain form wins a tie: it comes first
    return str(value)


def _compact_exponent(text: str) -> str:
    """``3.00e-04`` as ``3e-4``; text with no exponent as it is."""
    mantissa, sep, exponent = text.partition("e")
    if not sep:
        return text
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def override_values(overrides: Iterable[str]) -> dict[str, str]:
    """``['lr=1e-3', 'batch=64']`` as ``{'lr': '1e-3', 'batch': '64'}`` (text, as given)."""
    return dict(o.partition("=")[::2] for o in overrides)


def varying_keys(values: Sequence[Mapping[str, str]]) -> list[str]:
    """The keys of ``values`` (each run's ``override_values``) whose text differs between
    the runs, in the order they first come."""
    every = list(dict.fromkeys(k for v in values for k in v))
    return [k for k in every if len({v.get(k) for v in values}) > 1]


def run_names(base: str, runs: Sequence[Sequence[str]], taken: Callable[[str], bool],
              keys: Sequence[str] | None = None) -> list[str]:
    """A unique name per run: ``base`` and each value that differs between the runs
    (``keys``: the value of each of these, as a search names every trial it makes).

    ``charlm-lr3e-4-batch64``; a name ``taken`` (or made twice here) gets a number.
    """
    values = [override_values(overrides) for overrides in runs]
    varying = list(keys) if keys is not None else varying_keys(values)
    chosen: set[str] = set()
    names = []
    for run in values:
        parts = [base] + [f"{k}{short_text(parse_literal(run[k]))}" for k in varying if k in run]
        name = unique_name(name_from("-".join(parts)), lambda n: taken(n) or n in chosen)
        chosen.add(name)
        names.append(name)
    return names
