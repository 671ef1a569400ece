"""Metrics read from a wrapped command's output: real-looking lines, and what must not count."""

from __future__ import annotations

import math

import pytest

from engine.common.output_lines import read_line, training_loss_key
from engine.common.output_metrics import (
    MetricParser,
    PatternError,
    compile_loss_pattern,
    compile_metric_patterns,
)


def parse_pairs(line: str) -> tuple[int | None, dict[str, float]]:
    """The step and metrics ``read_line`` finds in one line."""
    reading = read_line(line)
    return reading.step, reading.metrics

LINES: list[tuple[str, int | None, dict[str, float]]] = [
    ("loss 7.61", None, {"loss": 7.61}),
    ("loss: 0.123", None, {"loss": 0.123}),
    ("Loss=0.5", None, {"loss": 0.5}),
    ("train_loss 1.2e-3", None, {"train/loss": 1.2e-3}),
    ("step 100 | loss 2.5 | lr 3e-4", 100, {"loss": 2.5, "lr": 3e-4}),
    ("iter 3: loss 2.0041, time 12.3ms, mfu 41.2%", 3, {"loss": 2.0041}),
    ("Step 20/100 loss=0.3", 20, {"loss": 0.3}),
    (
        "{'loss': 0.5, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.1}",  # HF Trainer
        None,
        {"loss": 0.5, "grad_norm": 1.2, "learning_rate": 5e-05, "epoch": 0.1},
    ),
    ('{"step": 5, "loss": 0.3, "note": "x", "ok": true}', 5, {"loss": 0.3}),
    (
        "Epoch 1:  50%|█████     | 50/100 [00:01<00:01, 45.2it/s, loss=0.123, lr=0.001]",
        None,
        {"loss": 0.123, "lr": 0.001},  # the epoch places the step, it is no value
    ),
    ("loss: tensor(0.5123, grad_fn=<NllLossBackward0>)", None, {"loss": 0.5123}),
    (
        "2024-05-01 12:30:45,123 INFO val_loss=0.25 val_acc: 91.5",
        None,
        {"val/loss": 0.25, "val/acc": 91.5},
    ),
    ("the loss went down to 0.5.", None, {}),  # "to" is no metric name; "loss" has no number
    ("loss 0.5.", None, {"loss": 0.5}),  # a full stop ends the number
    # Must not count:
    ("saved ckpt_loss_0.5.pt", None, {}),  # a number glued to a name is part of the name
    ("run_loss3 finished", None, {}),
    ("epoch 3/10", None, {}),  # a counter, not a value
    ("Using 4 GPUs", None, {}),  # a space separates only metric-like names
    ("Downloading 100 files", None, {}),
    ("version 1.2.3", None, {}),
]


@pytest.mark.parametrize(("line", "step", "metrics"), LINES, ids=[c[0][:40] for c in LINES])
def test_lines(line: str, step: int | None, metrics: dict[str, float]) -> None:
    assert parse_pairs(line) == (step, metrics)


def test_lr_is_its_own_metric_never_the_loss() -> None:
    points = MetricParser().feed("step 7 lr 3e-4\nstep 8 loss 2.0 lr 3e-4\n")
    assert points == [(7, "lr", 3e-4), (8, "loss", 2.0), (8, "lr", 3e-4)]


def test_nan_is_kept_as_a_value() -> None:
    _, metrics = parse_pairs("loss=nan")
    assert math.isnan(metrics["loss"])


def test_steps_are_counted_when_the_output_names_none() -> None:
    parser = MetricParser()
    assert parser.feed("loss 3\nhello\nloss 2\nloss 1\n") == [
        (0, "loss", 3.0),
        (1, "loss", 2.0),
        (2, "loss", 1.0),
    ]


def test_a_line_without_a_step_belongs_to_the_last_step_seen() -> None:
    parser = MetricParser()
    points = parser.feed("step 10 loss 3\nval_loss 2.5\n")
    assert points == [(10, "loss", 3.0), (10, "val/loss", 2.5)]


def test_partial_lines_wait_for_their_end_and_the_last_is_read_at_finish() -> None:
    parser = MetricParser()
    assert parser.feed("step 1 lo") == []
    assert parser.feed("ss 0.5\nstep 2 loss") == [(1, "loss", 0.5)]
    assert parser.feed(" 0.25") == []
    assert parser.finish() == [(2, "loss", 0.25)]


def test_streams_keep_their_own_partial_lines() -> None:
    parser = MetricParser()
    assert parser.feed("step 1 loss ", "stdout") == []
    assert parser.feed("warning: x\n", "stderr") == []
    assert parser.feed("0.5\n", "stdout") == [(1, "loss", 0.5)]


def test_carriage_return_redraws_count_only_when_values_change() -> None:
    # tqdm redraws the bar with \r; a redraw with the same postfix adds nothing,
    # each new value is a point, at the bar's count, as soon as its redraw is complete.
    parser = MetricParser()
    text = (
        "\r  0%|          | 0/100 [00:00<?, ?it/s]"
        "\r 10%|█         | 10/100 [00:01<00:09, 9.9it/s, loss=0.9]"
        "\r 20%|██        | 20/100 [00:02<00:08, 9.9it/s, loss=0.9]"
        "\r 30%|███       | 30/100 [00:03<00:07, 9.9it/s, loss=0.7]"
        "\r 40%|████      | 40/100 [00:04<00:06, 9.9it/s, loss=0.6]"
    )
    assert parser.feed(text) == [(10, "loss", 0.9), (30, "loss", 0.7)]
    assert parser.feed("\n") == [(40, "loss", 0.6)]


def test_ansi_colours_are_ignored() -> None:
    assert MetricParser().feed("\x1b[32mloss\x1b[0m: 0.5\n") == [(0, "loss", 0.5)]


def test_a_loss_pattern_is_the_only_source_of_loss() -> None:
    parser = MetricParser(r"objective=(?P<loss>\S+) at (?P<step>\d+)")
    points = parser.feed("objective=0.42 at 17 loss 9 lr 0.1\nloss 5\n")
    assert sorted(points) == [(17, "loss", 0.42), (17, "lr", 0.1)]


def test_a_loss_pattern_without_names_uses_its_first_group() -> None:
    assert MetricParser(r"L=(\d+\.\d+)").feed("L=1.50\n") == [(0, "loss", 1.5)]


def test_a_bad_loss_pattern_is_one_clear_error() -> None:
    with pytest.raises(PatternError, match="not a valid regex"):
        compile_loss_pattern("loss=(")


@pytest.mark.parametrize(
    ("line", "metrics"),
    [
        ("step 5: train loss 2.1, val loss 2.3", {"train/loss": 2.1, "val/loss": 2.3}),
        ("eval_loss=0.4 valid_ppl=30 validation/acc=0.8", {"val/loss": 0.4, "val/ppl": 30.0,
                                                          "val/acc": 0.8}),
        ("| end of epoch 1 | valid loss 5.8 | valid ppl 330.1", {"val/loss": 5.8,
                                                                "val/ppl": 330.1}),
        ("Test set: Average loss: 0.0470, Accuracy: 9842/10000 (98%)", {"test/loss": 0.047}),
        ("Train Epoch: 1 [640/60000 (1%)]\tLoss: 1.168", {"loss": 1.168}),
        ("loss 0.5 | val loss 0.4 | lr 0.01", {"loss": 0.5, "val/loss": 0.4, "lr": 0.01}),
    ],
)
def test_names_are_qualified_by_the_words_around_them(
    line: str, metrics: dict[str, float]
) -> None:
    assert parse_pairs(line)[1] == metrics


def test_config_echoes_argument_dumps_and_warnings_are_no_metrics() -> None:
    parser = MetricParser()
    text = (
        "batch_size = 64\nn_layer = 4\ntokens per iteration will be: 768\n"
        "Namespace(lr=0.1, loss_weight=2)\nUserWarning: dropout=0.2 and num_layers=1\n"
        "iter 1: loss 2.5\n"
    )
    assert parser.feed(text) == [(1, "loss", 2.5)]


def test_a_line_shaped_like_earlier_progress_counts() -> None:
    # "lr=... grad_norm=..." alone is no progress, until a progress line had that shape.
    parser = MetricParser()
    assert parser.feed("lr=0.1 grad_norm=2\n") == []
    assert parser.feed("step 3 lr=0.1 grad_norm=1.5\nstep 4\nlr=0.05 grad_norm=1.0\n") == [
        (3, "lr", 0.1),
        (3, "grad_norm", 1.5),
        (4, "lr", 0.05),
        (4, "grad_norm", 1.0),
    ]


def test_stderr_gives_metrics_only_from_bars_and_patterns() -> None:
    parser = MetricParser(metric_patterns=[r"gnorm=gn (?P<value>\S+)"])
    assert parser.feed("step 1 loss 0.5\n", "stderr") == []
    assert parser.feed("step 2 gn 0.25\n", "stderr") == [(2, "gnorm", 0.25)]
    bar = " 50%|#####     | 5/10 [00:01<00:01, 4.5it/s, loss=0.3]\n"
    assert parser.feed(bar, "stderr") == [(5, "loss", 0.3)]


def test_metric_patterns_name_their_series_and_may_give_the_step() -> None:
    parser = MetricParser(metric_patterns=[r"bleu=BLEU4 = (\S+) @ (?P<step>\d+)"])
    points = parser.feed("BLEU4 = 27.3 @ 1000\nloss 2\n")
    assert points == [(1000, "bleu", 27.3), (1000, "loss", 2.0)]


def test_only_patterns_turns_the_rules_off() -> None:
    parser = MetricParser(metric_patterns=[r"loss=L:(\S+)"], only_patterns=True)
    assert parser.feed("step 7 L:0.5 acc 0.9\nloss 3\n") == [(7, "loss", 0.5)]


def test_steps_never_go_backwards() -> None:
    parser = MetricParser()
    assert parser.feed("step 10 loss 1\nstep 4 loss 2\nloss 3\n") == [
        (10, "loss", 1.0),
        (10, "loss", 2.0),
        (10, "loss", 3.0),
    ]


@pytest.mark.parametrize("spec", ["noequals", "=x", "loss=(", "loss="])
def test_a_bad_metric_pattern_is_one_clear_error(spec: str) -> None:
    with pytest.raises(PatternError, match="--metric"):
        compile_metric_patterns([spec])


def test_an_epoch_is_the_step_only_while_nothing_finer_was_named() -> None:
    assert MetricParser().feed("epoch 1 loss 0.5\nepoch 2 loss 0.4\n") == [
        (1, "loss", 0.5),
        (2, "loss", 0.4),
    ]
    finer = MetricParser()
    assert finer.feed("epoch 1 step 300 loss 0.5\nend of epoch 1 | valid loss 0.6\n") == [
        (300, "loss", 0.5),
        (300, "val/loss", 0.6),
    ]


def test_the_training_loss_is_plain_loss_else_train_scoped_never_val_or_test() -> None:
    assert training_loss_key(["train/loss", "loss", "val/loss"]) == "loss"
    assert training_loss_key(["val/loss", "train/loss", "test/loss"]) == "train/loss"
    assert training_loss_key(["val_loss", "train_loss"]) == "train_loss"  # a script's own name
    assert training_loss_key(["val/loss", "nll_loss"]) == "nll_loss"  # unscoped beats none
    assert training_loss_key(["val/loss", "test/loss", "eval_loss", "acc"]) is None
