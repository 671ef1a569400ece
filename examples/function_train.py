"""Level 1: a plain ``train(run)`` function, started with

    traintop start examples/function_train.py:train lr=2e-2

Full control: pause, release-pause, fork and exact resume. A classic PyTorch
loop on data made up on the spot (no download): a small MLP learns to sort
points into two interleaved spirals.
"""

import math

import torch
from torch import nn

# Defaults: traintop checks overrides against these keys and types.
CONFIG = {"steps": 600, "lr": 1e-2, "hidden": 64, "batch": 128, "seed": 0}


def spirals(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals with a little noise: points and 0/1 labels."""
    t = torch.rand(n, generator=gen) * 3 * math.pi
    label = torch.randint(0, 2, (n,), generator=gen)
    angle = t + label * math.pi
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
    return x + 0.02 * torch.randn(n, 2, generator=gen), label


def train(run):
    cfg = run.config
    gen = torch.Generator().manual_seed(cfg.seed)
    model = nn.Sequential(
        nn.Linear(2, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh(),
        nn.Linear(cfg.hidden, 2),
    ).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.track(model=model, optimizer=optimizer, data=gen)  # what a checkpoint holds

    for step in run.steps(cfg.steps):  # pause, fork and kill happen between steps
        x, y = spirals(cfg.batch, gen)
        logits = model(x.to(run.device))
        loss = nn.functional.cross_entropy(logits, y.to(run.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = (logits.argmax(dim=1) == y.to(run.device)).float().mean()
        run.log(loss=loss, accuracy=accuracy)
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f}")
