"""Level 0: an existing PyTorch script, watched and controlled with three added lines.

    python examples/attach_train.py --steps 2000

It appears in ``traintop`` like any run: pause, kill, release and fork work.
A fork re-runs this script (same interpreter, arguments and directory) and
continues from the checkpoint, with the overrides in ``run.config``.
A small MLP learns to sort points into two interleaved spirals.
"""

import argparse
import math
import time

import torch
from torch import nn

import traintop


def spirals(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals with a little noise: points and 0/1 labels."""
    t = torch.rand(n, generator=gen) * 3 * math.pi
    label = torch.randint(0, 2, (n,), generator=gen)
    angle = t + label * math.pi
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
    return x + 0.02 * torch.randn(n, 2, generator=gen), label


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step (demos)")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    run = traintop.init(config={"steps": args.steps, "lr": args.lr, "sleep": args.sleep},
                        name=args.name)
    cfg = run.config  # a fork's overrides are here, not in args

    torch.manual_seed(0)  # the model's initial weights: the same run every time
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # After everything that draws random numbers at setup: a fork restores here.
    run.track(model=model, optimizer=optimizer, data=gen)

    for step in run.steps(cfg.steps):
        x, y = spirals(128, gen)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log(loss=loss, accuracy=(logits.argmax(dim=1) == y).float().mean())
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
        if cfg.sleep:
            time.sleep(cfg.sleep)


if __name__ == "__main__":
    main()
