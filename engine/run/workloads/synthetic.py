"""A fast synthetic regression workload, for tests and demos.

A small MLP with dropout learns a random linear map. Batches come from a
tracked ``torch.Generator`` and dropout draws from the global torch RNG, so a
resumed run is bit-exact only if both RNG states are restored. Config knobs
make runs slow (``sleep``), failing (``fail_at``), diverging (``nan_at``,
``spike_at``), chatty (``print_every``) or heavy on metrics (``extra_metrics``).
Defaults: registry.BUILTIN_DEFAULTS.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from engine.run.run_api import Run


def train(run: Run) -> None:
    """Train the synthetic model for ``config.steps`` steps."""
    cfg = run.config
    dim, batch = int(cfg.dim), int(cfg.batch)
    data_rng = torch.Generator().manual_seed(int(cfg.seed))
    # Drawn before track(): a resumed run draws the same map from the same seed.
    true_map = torch.randn(dim, 1, generator=data_rng)
    model = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    model.to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.lr), momentum=0.9)
    run.track(model=model, optimizer=optimizer, data_rng=data_rng)

    extra_keys = [f"extra_{i}" for i in range(int(cfg.extra_metrics))]
    for step in run.steps(int(cfg.steps)):
        if step == cfg.fail_at:
            raise RuntimeError(f"synthetic failure at step {step}")
        x = torch.randn(batch, dim, generator=data_rng)
        y = x @ true_map + 0.1 * torch.randn(batch, 1, generator=data_rng)
        loss = nn.functional.mse_loss(model(x.to(run.device)), y.to(run.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        # Only what is logged goes wrong (nan_at, spike_at), so a run paused for it
        # resumes and trains on exactly as it would have.
        if step == cfg.nan_at:
            run.log(loss=math.nan)
        elif step == cfg.spike_at:
            run.log(loss=loss.detach() * 1000)
        else:
            run.log(loss=loss.detach())
        if extra_keys:
            run.log(**{key: step + i * 0.5 for i, key in enumerate(extra_keys)})
        if cfg.print_every and step % int(cfg.print_every) == 0:
            print(f"step {step} loss {loss.item():.4f}")
        if cfg.sleep:
            time.sleep(float(cfg.sleep))
