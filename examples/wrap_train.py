"""Level 0: any script, unchanged, started with

    traintop run -- python examples/wrap_train.py --steps 300

traintop reads the ``step N loss X`` lines it prints. Pause stops the process
in place (SIGSTOP) and resume continues it; kill sends Ctrl-C (SIGINT) first,
which this script answers by saving its model. No fork: traintop cannot
checkpoint a script it does not control. A classic PyTorch loop on data made up
on the spot (no download): a small MLP fits a noisy sine.
"""

import argparse
import time

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step")
    parser.add_argument("--save", default="", help="where to save the model on Ctrl-C or exit")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 512).unsqueeze(1)
    y = torch.sin(x) + 0.05 * torch.randn_like(x)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    step = 0
    try:
        for step in range(args.steps):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 10 == 0:
                print(f"step {step} loss {loss.item():.5f} lr {args.lr:g}")
            time.sleep(args.sleep)
    except KeyboardInterrupt:
        print(f"interrupted at step {step}", flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
