"""A small character-level transformer, trained on text that is always present.

With ``text = ""`` it reads Python's own standard-library sources (sorted, up
to ~2 MB), so the product shows a real, falling loss curve with no download.
Otherwise ``text`` names a file. Defaults: registry.BUILTIN_DEFAULTS.
"""

from __future__ import annotations

import math
import sys
import sysconfig
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.run.data_cache import load_or_build, source_stamp
from engine.run.run_api import Run, RunConfig
from engine.rundir.paths import RunDir

MAX_TEXT_BYTES = 2_000_000
VAL_FRACTION = 0.1
EVAL_BATCHES = 8


def read_text(source: str) -> str:
    """The training text: the named file, or the stdlib sources in a fixed order."""
    if source:
        return Path(source).expanduser().read_text(encoding="utf-8", errors="replace")
    parts: list[str] = []
    size = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        part = path.read_text(encoding="utf-8", errors="replace")
        parts.append(part)
        size += len(part)
        if size >= MAX_TEXT_BYTES:
            break
    return "".join(parts)[:MAX_TEXT_BYTES]


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then an MLP."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.resid_drop(self.proj(att.transpose(1, 2).reshape(b, t, c)))
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class CharTransformer(nn.Module):
    """Token and position embeddings, a stack of blocks, a tied output head."""

    def __init__(self, vocab: int, cfg: RunConfig) -> None:
        super().__init__()
        d = int(cfg.d_model)
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(int(cfg.block), d)
        self.drop = nn.Dropout(float(cfg.dropout))
        self.blocks = nn.Sequential(
            *(Block(d, int(cfg.heads), float(cfg.dropout)) for _ in range(int(cfg.layers)))
        )
        self.ln = nn.LayerNorm(d)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        # Weight tying: the output head reuses the token embedding.
        logits: torch.Tensor = self.ln(self.blocks(x)) @ self.tok.weight.T
        return logits


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak at the last step."""
    peak, warmup, total = float(cfg.lr), int(cfg.warmup), max(1, int(cfg.steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _batch(data: torch.Tensor, cfg: RunConfig, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    block = int(cfg.block)
    starts = torch.randint(len(data) - block - 1, (int(cfg.batch),), generator=gen)
    rows = starts[:, None] + torch.arange(block + 1)
    chunk = data[rows]
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def _val_loss(model: nn.Module, val: torch.Tensor, cfg: RunConfig, device: str) -> float:
    # A fixed generator: evaluation must not move the training data stream.
    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    model.eval()
    total = 0.0
    for _ in range(EVAL_BATCHES):
        x, y = (t.to(device) for t in _batch(val, cfg, gen))
        total += F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    model.train()
    return total / EVAL_BATCHES


def encoded_text(run: Run) -> tuple[list[str], torch.Tensor]:
    """The vocabulary and the text as its indices: prepared once per text, then cached."""
    source = str(run.config.text)
    key: dict[str, object] = {"format": 1, "max_bytes": MAX_TEXT_BYTES}
    if source:
        path = Path(source).expanduser().resolve()
        key.update(text=str(path), stamp=source_stamp(path))
    else:  # the standard library's sources do not change within one Python
        key.update(text="", stdlib=sysconfig.get_paths()["stdlib"], python=sys.version)

    def build() -> dict[str, object]:
        text = read_text(source)
        chars = sorted(set(text))
        index = {ch: i for i, ch in enumerate(chars)}
        return {"chars": chars, "data": torch.tensor([index[ch] for ch in text], dtype=torch.int32)}

    prepared = load_or_build(RunDir(run.dir), "charlm", key, build)
    return list(prepared["chars"]), prepared["data"].long()


def train(run: Run) -> None:
    """Train the character model for ``config.steps`` steps."""
    cfg = run.config
    chars, data = encoded_text(run)
    split = int(len(data) * (1 - VAL_FRACTION))
    train_data, val_data = data[:split], data[split:]

    model = CharTransformer(len(chars), cfg).to(run.device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay)
    )
    data_rng = torch.Generator().manual_seed(int(cfg.seed))
    run.track(model=model, optimizer=optimizer, data_rng=data_rng)

    eval_every = int(cfg.eval_every)
    for step in run.steps(int(cfg.steps)):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(run.device) for t in _batch(train_data, cfg, data_rng))
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        run.log(loss=loss.detach(), lr=lr)
        if eval_every and (step + 1) % eval_every == 0:
            run.log(val_loss=_val_loss(model, val_data, cfg, run.device))
