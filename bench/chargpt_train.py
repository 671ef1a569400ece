"""A small character-level GPT, trained the way a user's own script would be.

    python bench/chargpt_train.py --iters 5000

The shape of the well-known minimal GPT scripts (token and position
embeddings, pre-LayerNorm blocks of causal self-attention and an MLP, AdamW),
shrunk to tens of milliseconds per iteration on a laptop CPU. The text is this
repository's own Python sources, so nothing is downloaded. Attaching it to
traintop took the lines marked ``# traintop``; everything else is plain torch.
``bench/fair_cores.py`` starts it from a plain shell environment.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import traintop  # traintop

ROOT = Path(__file__).resolve().parent.parent


def load_text() -> str:
    """The repository's Python sources, in a fixed order (about a megabyte)."""
    files = sorted(p for top in ("engine", "tui", "tests") for p in (ROOT / top).rglob("*.py"))
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention that sees only earlier positions."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Block(nn.Module):
    """LayerNorm, attention, LayerNorm, MLP, each with a residual connection."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``n_layer`` blocks, a final norm and the head."""

    def __init__(self, vocab: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*(Block(n_embd, n_head) for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.blocks(self.wte(idx) + self.wpe(pos))
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class PlainRun:
    """What the script uses of a traintop run, for a wrapped command: it prints each loss."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = argparse.Namespace(**config)

    def track(self, **objects: object) -> None:
        """Nothing to checkpoint: a wrapped command cannot be forked."""

    def steps(self, total: int) -> range:
        return range(total)

    def log(self, loss: torch.Tensor) -> None:
        print(f"step {self.step} loss {loss.item():.4f}", flush=True)
        self.step += 1

    step = 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=96)
    parser.add_argument("--name", default="chargpt")
    parser.add_argument("--plain", action="store_true",
                        help="no traintop.init: print every loss (for 'traintop run -- ...')")
    args = parser.parse_args()

    if args.plain:
        run: Any = PlainRun(vars(args))
    else:
        run = traintop.init(config=vars(args), name=args.name)  # traintop
    cfg = run.config  # traintop: a fork's overrides are here

    text = load_text()
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)  # bytes: 256 symbols
    torch.manual_seed(1337)
    gen = torch.Generator().manual_seed(1337)
    model = GPT(256, cfg.block_size, cfg.n_layer, 4, cfg.n_embd)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    run.track(model=model, optimizer=optimizer, data=gen)  # traintop

    for it in run.steps(cfg.iters):  # traintop
        ix = torch.randint(len(data) - cfg.block_size - 1, (cfg.batch_size,), generator=gen)
        x = torch.stack([data[i : i + cfg.block_size] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + cfg.block_size] for i in ix])
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(loss=loss)  # traintop
        if it % 100 == 0 and not args.plain:
            print(f"iter {it}: loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
