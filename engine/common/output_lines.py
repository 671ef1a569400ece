"""What one line of a wrapped command's output says: its metrics, named, and its step hints.

This module reads a line on its own; ``output_metrics.MetricParser`` keeps what spans lines
(the epoch, the last step, table headers, earlier line shapes).

Names are qualified by the words around them, so a validation loss is never the loss:

- a prefix on the name itself: ``val_loss``, ``eval_loss``, ``valid/loss``, ``test_acc``,
  ``train_loss`` become ``val/loss``, ``val/loss``, ``val/loss``, ``test/acc``, ``train/loss``;
- a word just before it: ``train loss 2.1, val loss 2.3`` gives ``train/loss`` and ``val/loss``;
- an evaluation section earlier on the line: ``Test set: Average loss: 0.03`` and
  ``| end of epoch 1 | valid loss 5.8`` give ``test/loss`` and ``val/loss``.

A plain ``loss`` stays ``loss``: training is the default, so ``Train Epoch: 1 ... Loss: 2.3``
is ``loss`` (the word ``Train`` there names the epoch, not the loss).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
# The line's own global step: ``step 100``, ``iter 3:``, fairseq's ``num_updates=100``.
STEP_KEYS = frozenset({"step", "global_step", "iter", "iteration", "num_updates"})
# A name not glued to anything before it; a separator; a number not glued to
# anything after it (no letter, no further digits, no "/M" counter).
_PAIR = re.compile(
    rf"""(?<![\w./-])['"]?(?P<key>[A-Za-z][\w./-]*?)['"]?
        (?P<sep>\s*[:=]\s*|\s+)
        (?:tensor\()?(?P<value>{NUMBER})(?P<counter>\s*/\s*\d+)?(?!\w|\.\d|/\d)""",
    re.VERBOSE | re.IGNORECASE,
)
# Names that may stand before their value with only a space between.
_SPACED_KEY = re.compile(
    r".*(loss|acc|ppl|perplexity).*|lr|learning_rate|grad_norm|epoch|" + "|".join(STEP_KEYS)
)
# Names that make a line training progress (the base name, after any train/val/test prefix).
_LOSS_LIKE = re.compile(
    r"(?:\w+_)?(?:loss|acc|accuracy|top1|top5|ppl|perplexity|bpc|wer|cer|f1|bleu|map[\w-]*)"
)
_SCOPES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val", "evaluation": "val",
    "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
_PREFIXED = re.compile(r"(?P<scope>[a-z]+)[_/.-](?P<base>.+)")
# A word on its own (``val`` of ``val_loss`` is part of a name, not a word).
_WORD = re.compile(r"(?<![\w/])[A-Za-z]+(?![\w/])")
_RIGHT_BEFORE = re.compile(r"(?<![\w/])([A-Za-z]+)\s+$")
# A scope word that names the metric right after it ("val loss 2.3") opens no section.
_QUALIFIES = re.compile(r"\s+[A-Za-z][\w/.-]*\s*[:=]?\s*[-+.\d]")
_EPOCH = re.compile(r"(?<![\w/])epoch\b\s*[:=]?\s*(?P<epoch>\d+)(?:\s*/\s*(?P<of>\d+))?", re.I)
# A position inside an epoch: ``200/ 2983 batches``, tqdm's and Keras's ``50/100 [``,
# Keras 3's ``50/100 ━━━``,
# MNIST's ``[640/60000 (1%)]``.
_COUNTER = re.compile(
    r"(?<![\w./])(?P<n>\d+)\s*/\s*(?P<m>\d+)(?=\s*(?:batches\b|\[|\u2501))"
    r"|\[\s*(?P<bn>\d+)\s*/\s*(?P<bm>\d+)\s*[\](]"
)
# The CIFAR tutorial's ``[2,  2000] loss: 1.9``: epoch and batch, with no batch count.
_EPOCH_PAIR = re.compile(r"^\s*\[\s*(?P<epoch>\d+)\s*,\s*(?P<n>\d+)\s*\]")
# Lines that echo settings, never progress, whatever numbers they hold.
_NOT_PROGRESS = re.compile(r"warning|\b(?:namespace|\w*arguments)\(|^\s*-{1,2}\w", re.I)
# A Lightning bar's log version is a label, not a metric.
_LABELS = frozenset({"v_num"})


@dataclass
class LineReading:
    """What one line holds. ``position`` is (epoch or None, N, M or None) within an epoch."""

    metrics: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    epoch: int | None = None
    position: tuple[int | None, int, int | None] | None = None
    progress: bool = False  # a loss-like or step-like field: training progress
    echo: bool = False  # a warning or an argument dump: never progress


def qualify(name: str, before: str) -> str:
    """``name`` lower-cased and scoped by its own prefix or by the words in ``before``."""
    name = name.lower()
    prefixed = _PREFIXED.fullmatch(name)
    if prefixed and prefixed["scope"] in _SCOPES:
        return f"{_SCOPES[prefixed['scope']]}/{prefixed['base']}"
    right_before = _RIGHT_BEFORE.search(before)
    if right_before and right_before[1].lower() in _SCOPES:  # "val loss"
        return f"{_SCOPES[right_before[1].lower()]}/{name}"
    for word in reversed(list(_WORD.finditer(before))):  # a section: "Test set: ... loss"
        scope = _SCOPES.get(word[0].lower())
        if scope in ("val", "test") and not _QUALIFIES.match(before, word.end()):
            return f"{scope}/{name}"
    return name


def is_loss_like(name: str) -> bool:
    """Whether ``name`` (qualified or not) is a loss or a score, so its line is progress."""
    return bool(_LOSS_LIKE.fullmatch(name.rsplit("/", 1)[-1]))


def training_loss_key(keys: Iterable[str]) -> str | None:
    """Which of ``keys`` is the training loss: the series the LOSS column, the chart's
    default and the divergence watch follow.

    ``loss`` first, then ``train/loss``, then a training-scoped loss (``train_loss``,
    ``train/loss_total``), then any loss not scoped to validation or test. None: no loss.
    """
    ranked: list[tuple[int, str]] = []
    for key in keys:
        if key == "loss":
            return key
        lowered = key.lower()
        # The scope may come first (val_loss, train/loss) or last (TensorBoard's Loss/val).
        scope = next((_SCOPES[p] for p in re.split(r"[/_.-]", lowered) if p in _SCOPES), None)
        if "loss" not in lowered or scope in ("val", "test"):
            continue
        ranked.append((0 if lowered == "train/loss" else 1 if scope == "train" else 2, key))
    return min(ranked)[1] if ranked else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_line(line: str) -> LineReading:
    """The metrics, step hints and kind of one line (ANSI colours already removed)."""
    reading = LineReading(echo=bool(_NOT_PROGRESS.search(line)))
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}") and _read_mapping(stripped, reading):
        return reading
    epoch = _EPOCH.search(line)
    taken: list[tuple[int, int]] = []
    if epoch:
        reading.epoch = int(epoch["epoch"])
        taken.append(epoch.span())
    pair = _EPOCH_PAIR.match(line)
    if pair:
        reading.epoch = int(pair["epoch"])
        reading.position = (reading.epoch, int(pair["n"]), None)
    counter = _COUNTER.search(line)
    if counter and reading.position is None:
        n, m = (counter["n"], counter["m"]) if counter["n"] else (counter["bn"], counter["bm"])
        reading.position = (reading.epoch, int(n), int(m))
    for match in _PAIR.finditer(line):
        if any(start <= match.start("key") < end for start, end in taken):
            continue
        _take_pair(match, line, reading)
    reading.progress = not reading.echo and (
        reading.step is not None
        or reading.position is not None
        or any(is_loss_like(name) for name in reading.metrics)
    )
    return reading


def _take_pair(match: re.Match[str], line: str, reading: LineReading) -> None:
    key = match["key"].lower()
    spaced = not match["sep"].strip()
    value = _number(match["value"])
    if (spaced and not _SPACED_KEY.fullmatch(key)) or value is None or key in _LABELS:
        return
    if key in STEP_KEYS:
        if value.is_integer() and reading.step is None:
            reading.step = int(value)
    elif match["counter"] is None:
        reading.metrics[qualify(key, line[: match.start()])] = value


def _read_mapping(text: str, reading: LineReading) -> bool:
    """A JSON object or a printed Python dict (HF Trainer's ``{'loss': 0.5, ...}``)."""
    data: object
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return False
    if not isinstance(data, dict):
        return False
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = str(key).lower()
        if name in STEP_KEYS:
            if isinstance(value, int) and reading.step is None:
                reading.step = value
        elif name not in _LABELS:
            reading.metrics[qualify(name, "")] = float(value)
    reading.progress = not reading.echo and (
        reading.step is not None or any(is_loss_like(n) for n in reading.metrics)
    )
    return True
