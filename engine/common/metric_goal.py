"""Which way a metric gets better, read from its name: a loss, an error or a perplexity
falls, an accuracy, an F1, a BLEU or a reward rises. The sweep view ranks runs by it,
and its "best" value of a metric is the lowest or the highest that way.

Standard library only.
"""

from __future__ import annotations

import re

# Words of a metric's name that say higher is better ('val/acc', 'top1_accuracy', 'mAP').
HIGHER_WORDS = frozenset({
    "acc", "accuracy", "auc", "auroc", "f1", "precision", "recall", "bleu", "rouge",
    "meteor", "reward", "rewards", "return", "returns", "score", "iou", "miou", "map",
    "psnr", "ssim", "r2", "top1", "top5", "hit", "hits", "ndcg", "mrr", "win", "winrate",
})
# Words that say lower is better, whatever else the name holds ('acc_loss').
LOWER_WORDS = frozenset({"loss", "error", "err", "perplexity", "ppl", "nll", "mse", "mae",
                         "rmse", "cer", "wer", "regret", "cost", "distance"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one: one of its words (split at
    anything not a letter or digit, and between 'top1' style digits) is accuracy-like and
    none is loss-like. A name that says neither is taken as a loss."""
    words = set(re.split(r"[^a-z0-9]+", metric.lower())) - {""}
    return bool(words & HIGHER_WORDS) and not words & LOWER_WORDS
