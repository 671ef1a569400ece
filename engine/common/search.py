"""A sweep that learns where to look: the Tree-structured Parzen Estimator (TPE), the
default search of Optuna and of Hyperopt, and what W&B calls a "bayes" sweep.

A sweep started with ``--search tpe --trials N`` runs N trials in all. The first
``startup`` are drawn at random and start together; from then on the daemon makes each
next trial when one of the sweep's runs ends (and none of the sweep waits in its queue
already, so the queue's slots set how many run at once), from what the ended ones
scored:

- the trials are ranked: those that trained to their end by their value, best first,
  then those stopped sooner (an early-stop rung, a user's kill) by how far they got,
  then their value, as Optuna ranks pruned trials after complete ones;
- the best ``good_share`` of them (at least one, at most ``MAX_GOOD``) are the good,
  the rest the others;
- each axis on its own gets two densities: l(x) from the good trials' values and g(x)
  from the others'. A number (a log axis in log space, an int axis as a number rounded
  after) is a mixture of a normal at each value, truncated to the axis's range, each as
  wide as the larger gap to its neighbours, plus a wide prior that keeps some weight
  everywhere. No kernel is narrower than the range / (trials + 1), counting all the
  trials ended: hyperopt counts only those of its own density, which leaves the one or
  two good trials of an early search kernels half the range wide, and its proposals
  went to the ends of the range, where no other trial had been (on the objectives of
  ``bench/search_quality.py``, counting all of them found ~3x lower regret in 40
  trials). A grid axis is a choice among its values: counts, plus one spread over all;
- ``CANDIDATES`` values are drawn from l(x), and the one with the highest l(x) / g(x)
  is taken: likely among good trials, unlikely among the others.

That is the search with each axis on its own (``propose(..., joint=False)``). By
default the axes are learned together, as Optuna's multivariate TPE does (``_joint``):
l(x) and g(x) are mixtures over whole trials, each a product of one kernel per axis (a
truncated normal ``SIGMA_SHARE`` of the range wide, narrowing with more trials, by
Scott's rule; for a choice, most of its weight on the trial's value), so a candidate
drawn near a good trial is near it in every axis at once. Each axis alone pairs a good
lr of one trial with a good batch of another, which may be bad together; on the
bench's five objectives the joint search's regret was lower at 20, 40 and 100 trials
(geometric means 0.44x, 0.36x, 0.45x of random's, against 0.61x, 0.39x, 0.57x).

A seed axis is never learned: it is drawn at random every time. The draws come from
the sweep's seed and the trial's number, so a search is replayed the same. Standard
library only: the CLI draws the first trials, the daemon the rest.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.common.config import parse_literal
from engine.common.early_stop import judged_problem
from engine.common.settings import is_seed_key
from engine.common.sweep import SweepError, SweepSpec, parse_random

METHODS = ("tpe",)
DEFAULT_STARTUP = 10  # Optuna's n_startup_trials
GOOD_SHARE = 0.1  # Optuna's: the share of the ranked trials that are the good ones
MAX_GOOD = 25
CANDIDATES = 24  # values drawn from l(x) per axis (Optuna's n_ei_candidates)
PRIOR_WEIGHT = 1.0
# How many trials in a row may fail, with none ever scored, before a search stops making
# more: a script that crashes on every config should not be run forty times.
FAILURES_IN_A_ROW = 3
_FIELDS = {"method", "trials", "startup", "fixed", "axes", "metric", "mode", "seed",
           "device", "since"}

Axis = list[str] | str  # a grid axis's values, or a random axis's text (log(1e-4..1e-2))


@dataclass(frozen=True)
class SearchRule:
    """How a sweep makes its trials: what it varies, how many, judged on what.

    ``fixed`` holds the sweep's fixed overrides (key -> value text), ``axes`` each axis
    searched; ``device`` is the device the sweep asked for (a run's own device field is
    the GPU it was given), for the trials the daemon makes.
    """

    label: ClassVar[str] = "search"
    method: str
    trials: int
    startup: int = DEFAULT_STARTUP
    fixed: Mapping[str, str] = field(default_factory=dict)
    axes: Mapping[str, Axis] = field(default_factory=dict)
    metric: str | None = None  # None: the run's training loss
    mode: str = "min"
    seed: int = 0
    device: str | None = None
    # When trials were last added (``sweep --more``; 0: never): kills and failures before
    # it no longer hold the search back.
    since: float = 0.0

    def __post_init__(self) -> None:
        problem = rule_problem(self)
        if problem:
            raise ValueError(problem)

    def wire(self) -> dict[str, Any]:
        return {"method": self.method, "trials": self.trials, "startup": self.startup,
                "fixed": dict(self.fixed), "axes": dict(self.axes), "metric": self.metric,
                "mode": self.mode, "seed": self.seed, "device": self.device,
                **({"since": self.since} if self.since else {})}

    @classmethod
    def from_wire(cls, data: Any) -> SearchRule:
        """A rule as a request or a stored row gives it; ValueError, in words, if it is not one."""
        if not isinstance(data, dict) or not {"method", "trials"} <= set(data) <= _FIELDS:
            raise ValueError("search must be an object of method, trials, startup, fixed, "
                             "axes, metric, mode, seed, device and since")
        whole: dict[str, int] = {}
        for key, default in (("trials", 0), ("startup", DEFAULT_STARTUP), ("seed", 0)):
            value = data.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("search: trials, startup and seed must be whole numbers")
            whole[key] = value
        fixed, axes = data.get("fixed", {}), data.get("axes", {})
        if not isinstance(fixed, dict) or not all(isinstance(v, str) for v in fixed.values()):
            raise ValueError("search: fixed must map keys to value text")
        if not isinstance(axes, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            for v in axes.values()
        ):
            raise ValueError("search: axes must map keys to a list of values or a random axis")
        metric, device = data.get("metric"), data.get("device")
        if not all(v is None or isinstance(v, str) for v in (metric, device)):
            raise ValueError("search: the metric and the device must be names")
        since = data.get("since", 0.0)
        if not isinstance(since, int | float) or isinstance(since, bool) or not math.isfinite(
                since):
            raise ValueError("search: since must be a time")
        return cls(str(data["method"]), whole["trials"], whole["startup"], fixed, axes,
                   metric, str(data.get("mode", "min")), whole["seed"], device, float(since))

    def describe(self) -> str:
        """The rule in a few words, for ``show`` and a sweep's dry run."""
        better = "lowest" if self.mode == "min" else "highest"
        return (f"TPE over {', '.join(self.axes)}: {self.trials} trials, the first "
                f"{min(self.startup, self.trials)} at random, then each drawn near the "
                f"{better} {self.metric or 'training loss'} so far")

    def overrides(self, values: Mapping[str, str]) -> list[str]:
        """A trial's overrides: the fixed ones, then each axis's value."""
        return [*(f"{k}={v}" for k, v in self.fixed.items()),
                *(f"{k}={values[k]}" for k in self.axes)]


def rule_problem(rule: SearchRule) -> str | None:
    """What is wrong with a rule, in one line; None: nothing."""
    if rule.method not in METHODS:
        return f"search: the method is {' or '.join(METHODS)}, not {rule.method!r}"
    if rule.trials < 1:
        return f"search: --trials must be 1 or more, not {rule.trials}"
    if rule.startup < 1:
        return f"search: --startup must be 1 or more, not {rule.startup}"
    if not any(not is_seed_key(k) for k in rule.axes):
        return ("search: nothing to search: give the sweep an axis other than a seed "
                "(lr=log(1e-4..1e-2), batch=32,64)")
    judged = judged_problem("search", rule.metric, rule.mode)
    if judged:
        return judged
    for key, axis in rule.axes.items():
        if isinstance(axis, list):
            if len(axis) < 2:
                return f"search: the grid axis {key} needs two values or more"
            continue
        try:
            if parse_random(key, axis, f"{key}={axis}") is None:
                return f"search: {key}={axis} is not a random axis"
        except SweepError as exc:
            return f"search: {exc}"
    return None


def search_axes(spec: SweepSpec) -> dict[str, Axis]:
    """A spec's axes as a search takes them: each grid axis a choice among its values
    (not crossed: a trial takes one of them), each random axis as it is typed."""
    axes: dict[str, Axis] = {k: list(v) for k, v in spec.grid.items()}
    axes.update({k: v.text() for k, v in spec.random.items()})
    return axes


def search_from(spec: SweepSpec, method: str, trials: int | None, startup: int | None = None,
                metric: str | None = None, mode: str = "min", seed: int = 0,
                device: str | None = None) -> SearchRule:
    """The search of a sweep's spec, as ``traintop sweep --search`` and the TUI's sweep
    dialog make it; ValueError, in words, if it cannot be one."""
    if trials is None:
        raise ValueError("--search tpe needs --trials N: how many trials in all")
    return SearchRule(method, trials, DEFAULT_STARTUP if startup is None else startup,
                      spec.fixed, search_axes(spec), metric, mode, seed, device)


def first_trials(rule: SearchRule) -> list[list[str]]:
    """The overrides of the trials a search starts with, drawn at random from its seed."""
    rng = random.Random(rule.seed)
    return [rule.overrides(draw_random(rule, rng)) for _ in range(min(rule.startup, rule.trials))]


# -- trials and their ranking ---------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """An ended trial as the search learns from it: its config, its value of the metric
    (the mean over its last twentieth of steps, as at an early-stop rung), whether it
    trained to its end, and the step it reached."""

    config: Mapping[str, Any]
    value: float
    complete: bool
    step: int


def ranked(trials: Sequence[Trial], mode: str) -> list[Trial]:
    """Best first: the complete trials by value, then the others by how far they got,
    then by value."""
    sign = 1.0 if mode == "min" else -1.0
    return sorted(trials, key=lambda t: (not t.complete, 0 if t.complete else -t.step,
                                         sign * t.value))


def good_count(count: int) -> int:
    """How many of ``count`` ranked trials are the good ones."""
    return max(1, min(MAX_GOOD, math.ceil(GOOD_SHARE * count)))


# -- drawing a trial ------------------------------------------------------------------

def draw_random(rule: SearchRule, rng: random.Random) -> dict[str, str]:
    """A trial's values, each axis drawn at random (a startup trial), as override text."""
    return {key: _random_value(axis, key, rng) for key, axis in rule.axes.items()}


def propose(rule: SearchRule, trials: Sequence[Trial], rng: random.Random,
            pending: Sequence[Mapping[str, Any]] = (),
            joint: bool = True) -> tuple[dict[str, str], str]:
    """The next trial's values (override text per axis) and how they were chosen, in
    words: at random while fewer than ``startup`` trials have a value, else by TPE.

    ``joint``: the axes are learned together (Optuna's multivariate TPE): a candidate is
    drawn near one good trial in every axis at once, so what goes together (a high lr
    with a large batch) stays together; else each axis on its own.

    ``pending``: the configs of the trials still training. They count among the others
    (Optuna's "constant liar"), so trials made while others run are not all drawn to
    the same place, none of them knowing yet how the others do."""
    if len(trials) < rule.startup:
        return draw_random(rule, rng), (
            f"drawn at random ({len(trials)} of the {rule.startup} trials the search "
            "starts from have a value)")
    order = ranked(trials, rule.mode)
    good = good_count(len(order))
    values: dict[str, str] = {}
    dims = {key: _Dim.of(key, axis) for key, axis in rule.axes.items() if not is_seed_key(key)}
    learned = [dim for dim in dims.values() if not dim.single]  # one value: nothing to learn
    if joint and len(learned) > 1:
        others = [*(t.config for t in order[good:]), *pending]
        values = _joint(learned, [t.config for t in order[:good]], others, rng)
    for key, axis in rule.axes.items():
        if key in values:
            continue
        if is_seed_key(key):
            values[key] = _random_value(axis, key, rng)
            continue
        seen = [[t.config.get(key) for t in order[:good]],
                [t.config.get(key) for t in order[good:]] + [c.get(key) for c in pending]]
        if isinstance(axis, list):
            values[key] = _best_choice(axis, seen[0], seen[1], rng)
        else:
            values[key] = _best_number(dims[key], seen[0], seen[1], rng)
    return values, (f"proposed by TPE from {len(order)} ended trials "
                    f"(the best {good} as the good ones)")


def _random_value(axis: Axis, key: str, rng: random.Random) -> str:
    if isinstance(axis, list):
        return rng.choice(axis)
    spec = parse_random(key, axis, f"{key}={axis}")
    assert spec is not None
    return spec.sample(rng)


def _best_choice(values: list[str], good: list[Any], others: list[Any],
                 rng: random.Random) -> str:
    """A grid axis's value: drawn from the good trials' counts, the one most likely
    among the good and least among the others kept (of values alike, the first drawn).

    A config's value and the axis's text are compared as values: a workload whose
    default is text keeps ``"16"`` as text, the axis's ``16`` reads as a number."""
    parsed = [parse_literal(v) for v in values]

    def weights(seen: list[Any]) -> list[float]:
        read = [parse_literal(s) if isinstance(s, str) else s for s in seen]
        counts = [sum(1 for s in read if s == p) for p in parsed]
        total = sum(counts) + PRIOR_WEIGHT
        return [(c + PRIOR_WEIGHT / len(values)) / total for c in counts]

    l_weights, g_weights = weights(good), weights(others)
    drawn = rng.choices(range(len(values)), weights=l_weights, k=CANDIDATES)
    best = max(drawn, key=lambda i: l_weights[i] / g_weights[i])
    return values[best]


@dataclass(frozen=True)
class _Parzen:
    """A mixture of normals truncated to [low, high]: one at each value seen, and a prior
    as wide as the range at its middle."""

    low: float
    high: float
    mus: list[float]
    sigmas: list[float]
    weights: list[float]  # each component's share, summing to 1
    scales: list[float]  # each component's share / (sigma sqrt(2 pi) its mass in range)

    @classmethod
    def of(cls, points: list[float], low: float, high: float, count: int) -> _Parzen:
        """The mixture of ``points``, each no narrower than the range / (``count`` + 1),
        ``count`` being the trials seen (the good ones and the others alike)."""
        span, middle = high - low, (low + high) / 2
        # The prior sorts among the points; each point is as wide as its larger gap to a
        # neighbour (the ends of the range count as neighbours), within [floor, span].
        parts = sorted([(p, False) for p in points] + [(middle, True)])
        mus = [mu for mu, _ in parts]
        edges = [low, *mus, high]
        floor = span / min(100.0, count + 1.0)
        sigmas = [span if prior else min(max(edges[i + 1] - edges[i], edges[i + 2] -
                                             edges[i + 1], floor), span)
                  for i, (_, prior) in enumerate(parts)]
        weights = [PRIOR_WEIGHT if prior else 1.0 for _, prior in parts]
        weights = [w / sum(weights) for w in weights]
        scales = [w / (s * math.sqrt(2 * math.pi) * (_cdf((high - m) / s) - _cdf((low - m) / s)))
                  for m, s, w in zip(mus, sigmas, weights, strict=True)]
        return cls(low, high, mus, sigmas, weights, scales)

    def sample(self, rng: random.Random) -> float:
        at = rng.choices(range(len(self.mus)), weights=self.weights)[0]
        for _ in range(100):
            x = rng.gauss(self.mus[at], self.sigmas[at])
            if self.low <= x <= self.high:
                return x
        return min(max(self.mus[at], self.low), self.high)

    def log_pdf(self, x: float) -> float:
        total = sum(scale * math.exp(-0.5 * ((x - mu) / sigma) ** 2)
                    for mu, sigma, scale in zip(self.mus, self.sigmas, self.scales, strict=True))
        return math.log(total) if total > 0 else -math.inf


def _cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _best_number(dim: _Dim, good: list[Any], others: list[Any], rng: random.Random) -> str:
    """A random axis's value: ``CANDIDATES`` drawn from l(x), the one with the highest
    l(x) / g(x) kept; as override text (a whole number for an int axis)."""
    if dim.single:
        return repr(dim.bounds[0])
    good_points = [x for x in map(dim.point, good) if x is not None]
    other_points = [x for x in map(dim.point, others) if x is not None]
    count = len(good_points) + len(other_points)
    l_density = _Parzen.of(good_points, dim.low, dim.high, count)
    g_density = _Parzen.of(other_points, dim.low, dim.high, count)
    candidates = [l_density.sample(rng) for _ in range(CANDIDATES)]
    return dim.text(max(candidates, key=lambda c: l_density.log_pdf(c) - g_density.log_pdf(c)))


# -- the axes learned together (multivariate TPE) ---------------------------------------

# A kernel's width in each number axis, as a share of its range, before it narrows with
# more trials: SIGMA_SHARE * (trials + 1) ** (-1 / (axes + 4)), Scott's rule as Optuna's
# multivariate TPE uses it.
SIGMA_SHARE = 0.2


@dataclass(frozen=True)
class _Dim:
    """One axis as the joint search sees it: a number in its own scale (log for ``log``,
    the unit around each whole number for ``int``), or the index of a choice."""

    key: str
    choices: tuple[Any, ...] = ()  # a grid axis's values, parsed; () for a number
    texts: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0
    kind: str = ""  # uniform, log or int; "" for a choice
    bounds: tuple[float, float] = (0.0, 0.0)  # the range as typed

    @classmethod
    def of(cls, key: str, axis: Axis) -> _Dim:
        if isinstance(axis, list):
            return cls(key, tuple(parse_literal(v) for v in axis), tuple(axis))
        spec = parse_random(key, axis, f"{key}={axis}")
        assert spec is not None  # checked with the rule
        low, high = ((math.log(spec.low), math.log(spec.high)) if spec.kind == "log"
                     else (spec.low, spec.high))
        if spec.kind == "int":
            low, high = low - 0.5, high + 0.5
        return cls(key, low=low, high=high, kind=spec.kind, bounds=(spec.low, spec.high))

    @property
    def single(self) -> bool:
        """Whether the axis is a number range of one value (``uniform(1..1)``)."""
        return not self.choices and self.high <= self.low

    def point(self, value: Any) -> float | None:
        """Where a config's value sits on this axis (None: it has none there)."""
        if self.choices:
            value = parse_literal(value) if isinstance(value, str) else value
            return float(self.choices.index(value)) if value in self.choices else None
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not math.isfinite(value) or (self.kind == "log" and value <= 0):
            return None
        return min(max(math.log(value) if self.kind == "log" else float(value), self.low),
                   self.high)

    def text(self, x: float) -> str:
        """A point as override text."""
        if self.choices:
            return self.texts[int(x)]
        if self.kind == "int":
            return str(min(max(round(x), int(self.bounds[0])), int(self.bounds[1])))
        return repr(min(max(math.exp(x) if self.kind == "log" else x, self.bounds[0]),
                        self.bounds[1]))


class _JointParzen:
    """A mixture with a component at each trial (a product of one kernel per axis: a
    truncated normal for a number, most of its weight on the trial's value for a choice)
    and a prior component (as wide as every range, even over the choices).

    Kept axis by axis, a list over the components each, so that a density is a few list
    comprehensions: 500 trials of 5 axes are read in milliseconds."""

    def __init__(self, dims: list[_Dim], points: list[list[float | None]], count: int) -> None:
        self.dims = dims
        share = SIGMA_SHARE * (count + 1) ** (-1.0 / (len(dims) + 4))
        rows: list[list[float | None]] = [*points, [None] * len(dims)]  # the prior last
        total = len(points) + PRIOR_WEIGHT
        self.weights = [1.0 / total] * len(points) + [PRIOR_WEIGHT / total]
        self.log_weights = [math.log(w) for w in self.weights]
        # Per axis: for a number, each component's (mu, sigma, 1/sigma, log normaliser);
        # for a choice, each component's log-probability of each value.
        self.axes: list[Any] = []
        for d, dim in enumerate(dims):
            if dim.choices:
                n = len(dim.choices)
                chosen = [math.log((PRIOR_WEIGHT / n + 1.0) / (PRIOR_WEIGHT + 1.0)),
                          math.log((PRIOR_WEIGHT / n) / (PRIOR_WEIGHT + 1.0))]
                self.axes.append([
                    [-math.log(n)] * n if row[d] is None else
                    [chosen[0] if i == int(row[d] or 0) else chosen[1] for i in range(n)]
                    for row in rows])
                continue
            span = dim.high - dim.low
            kernels = []
            for row in rows:
                x = row[d]
                mu, sigma = ((dim.low + dim.high) / 2, span) if x is None else (x, share * span)
                mass = _cdf((dim.high - mu) / sigma) - _cdf((dim.low - mu) / sigma)
                kernels.append((mu, sigma, 1.0 / sigma,
                                -math.log(sigma * math.sqrt(2 * math.pi) * mass)))
            self.axes.append(kernels)

    def sample(self, rng: random.Random) -> list[float]:
        at = rng.choices(range(len(self.weights)), weights=self.weights)[0]
        x: list[float] = []
        for dim, kernels in zip(self.dims, self.axes, strict=True):
            if dim.choices:
                probs = [math.exp(v) for v in kernels[at]]
                x.append(float(rng.choices(range(len(probs)), weights=probs)[0]))
                continue
            mu, sigma, _, _ = kernels[at]
            for _ in range(100):
                value = rng.gauss(mu, sigma)
                if dim.low <= value <= dim.high:
                    break
            else:
                value = min(max(mu, dim.low), dim.high)
            x.append(value)
        return x

    def log_pdf(self, x: list[float]) -> float:
        totals = self.log_weights
        for dim, kernels, value in zip(self.dims, self.axes, x, strict=True):
            if dim.choices:
                at = int(value)
                totals = [t + k[at] for t, k in zip(totals, kernels, strict=True)]
            else:
                totals = [t + norm - 0.5 * ((value - mu) * inv) ** 2
                          for t, (mu, _, inv, norm) in zip(totals, kernels, strict=True)]
        top = max(totals)
        return top + math.log(sum(math.exp(t - top) for t in totals))


def _joint(dims: list[_Dim], good: list[Mapping[str, Any]], others: list[Mapping[str, Any]],
           rng: random.Random) -> dict[str, str]:
    """Values for ``dims`` learned together: ``CANDIDATES`` drawn from l(x), the one with
    the highest l(x) / g(x) kept, as override text."""
    good_points = [[dim.point(c.get(dim.key)) for dim in dims] for c in good]
    other_points = [[dim.point(c.get(dim.key)) for dim in dims] for c in others]
    count = len(good_points) + len(other_points)
    l_density = _JointParzen(dims, good_points, count)
    g_density = _JointParzen(dims, other_points, count)
    candidates = [l_density.sample(rng) for _ in range(CANDIDATES)]
    best = max(candidates, key=lambda c: l_density.log_pdf(c) - g_density.log_pdf(c))
    return {dim.key: dim.text(x) for dim, x in zip(dims, best, strict=True)}


def search_of(run: Mapping[str, Any]) -> SearchRule | None:
    """A stored run's search rule (its ``search`` column, decoded), or None."""
    data = run.get("search")
    return SearchRule.from_wire(data) if data else None
