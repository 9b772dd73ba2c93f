"""Cost of a regularizer in one training step: forward solve, loss (+ regularization), backward.

The parameters do not change between repeats (no optimizer step), so every variant takes the same
steps and the same NFE (checked): the ratio is the price of the regularizer itself. The ERNODE paper
calls the error regularizer free (target <= 1.10); the RNODE pair (kinetic energy + Jacobian
Frobenius, one vector-Jacobian product per stage) is shown for comparison.

    python benchmarks/regularizer_cost.py [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved_medians, size_arguments

import nde_plugins as nde


class Field(torch.nn.Module):
    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, dim))

    def forward(self, t, y):
        return torch.tanh(self.net(torch.cat([y, t.expand(y.shape[0], 1)], dim=1)))


VARIANTS = {
    "none": None,
    "error_estimate": {"error_estimate": 0.1},
    "stiffness": {"stiffness": 0.0285},
    "kinetic_energy + jacobian_frobenius": {"kinetic_energy": 0.01, "jacobian_frobenius": 0.01},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser, repeats=30, batch=128, dim=64, width=100)
    parser.add_argument("--tol", type=float, default=1.4e-8)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    field = Field(args.dim, args.width)
    head = torch.nn.Linear(args.dim, 10)
    x, labels = torch.rand(args.batch, args.dim), torch.randint(0, 10, (args.batch,))
    nfe: dict[str, int] = {}

    def step(name, block):
        def run():
            z = block(x)
            loss = torch.nn.functional.cross_entropy(head(z), labels) + block.regularization()
            loss.backward()
            nfe[name] = block.stats.nfe_forward
        return run

    blocks = {name: nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol, regularizers=regs)
              for name, regs in VARIANTS.items()}
    medians = interleaved_medians([step(name, b) for name, b in blocks.items()], args.repeats)
    base = medians[0]
    print(f"torch {torch.__version__}, dopri5 rtol=atol={args.tol:g}, batch {args.batch}, field "
          f"[{args.dim}+t]-{args.width}-{args.dim} tanh, {args.repeats} interleaved repeats, one training step")
    print(f"{'regularizer':38s} {'median ms':>10s} {'ratio':>7s} {'NFE':>5s}")
    for (name, _), median in zip(VARIANTS.items(), medians):
        print(f"{name:38s} {median * 1e3:10.2f} {median / base:7.3f} {nfe[name]:5d}")


if __name__ == "__main__":
    main()
