"""Cost of a step-statistic regularizer in one training step, at equal NFE.

One training step is: ``z = block(x)``, ``loss = cross_entropy(head(z), labels) + block.regularization()``,
``loss.backward()``, ``optimizer.step()``. Compared, per size:

    ODEBlock(field, method="dopri5", rtol=tol, atol=tol)                                       baseline (and A/A)
    ODEBlock(..., regularizers={"error_estimate": 0.1})
    ODEBlock(..., regularizers={"stiffness": 0.0285})
    ODEBlock(..., regularizers={"kinetic_energy": 0.01})
    ODEBlock(..., regularizers={"jacobian_frobenius": 0.01})
    ODEBlock(..., regularizers={"kinetic_energy": 0.01, "jacobian_frobenius": 0.01})  (RNODE)
    ODEBlock(..., regularizers={"taylor": 0.01})                   (TayNODE, K = 2)
    ODEBlock(..., regularizers={"taylor": (0.01, {"order": 3})})   (TayNODE, K = 3)

The optimizer is Adam with learning rate 0: it does all of its work (moments, update) but leaves
the parameters where they are, so every variant and every round takes the same steps and NFE
(checked, as the solve's own evaluations: taylor evaluates the field again at every stage, and that
work is its price): the ratio is the price of the regularizer itself. The field is time-dependent,
[dim + t]-width-dim with tanh, as in the digits task; the baseline keeps statistics on.
Targets (issue 11), at the small and the repository size: error_estimate <= 1.05,
stiffness <= 1.08, kinetic_energy <= 1.05.

    python benchmarks/regularizer_cost.py [--sizes 16,8,32 256,16,64] [--quick] [--tol 1.4e-8]
"""

from __future__ import annotations

import torch
from _common import Report, Size, Timing, make_parser, measure, positive_float, setup

import nde_plugins as nde


class TimeField(torch.nn.Module):
    """f(t, y) = tanh(W2 tanh(W1 [y, t]))."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, dim))

    def forward(self, t, y):
        return torch.tanh(self.net(torch.cat([y, t.expand(y.shape[0], 1)], dim=1)))


VARIANTS = {
    "no regularizer": None,
    "error_estimate": {"error_estimate": 0.1},
    "stiffness": {"stiffness": 0.0285},
    "kinetic_energy": {"kinetic_energy": 0.01},
    "jacobian_frobenius": {"jacobian_frobenius": 0.01},
    "kinetic_energy + jacobian_frobenius": {"kinetic_energy": 0.01, "jacobian_frobenius": 0.01},
    "taylor": {"taylor": 0.01},
    "taylor, order 3": {"taylor": (0.01, {"order": 3})},
}
#: Upper bounds on the CPU ratio (the harness marks a row above its bound); the others have none.
TARGETS = {"error_estimate": 1.05, "stiffness": 1.08, "kinetic_energy": 1.05}


def main() -> None:
    parser = make_parser(__doc__, sizes=(Size(16, 8, 32), Size(256, 16, 64)))
    parser.add_argument("--tol", type=positive_float, default=1.4e-8,
                        help="rtol = atol (default 1.4e-8, the ERNODE setup)")
    args = parser.parse_args()
    setup()
    timing = Timing.from_args(args)
    report = Report(args, f"a regularizer's cost in one training step (forward, loss, backward, Adam step at lr 0), "
                          f"dopri5 rtol=atol={args.tol:g}, field [dim+t]-width-dim tanh, 10 classes")
    for size in args.sizes:
        field = TimeField(size.dim, size.width)
        head = torch.nn.Linear(size.dim, 10)
        optimizer = torch.optim.Adam([*field.parameters(), *head.parameters()], lr=0.0)
        x, labels = torch.rand(size.batch, size.dim), torch.randint(0, 10, (size.batch,))

        def step(block, field=field, head=head, optimizer=optimizer, x=x, labels=labels):
            def run() -> int:
                optimizer.zero_grad(set_to_none=True)
                z = block(x)
                loss = torch.nn.functional.cross_entropy(head(z), labels) + block.regularization()
                loss.backward()
                optimizer.step()
                return block.stats.nfe_forward  # the solve's evaluations: equal steps in every variant
            return run

        variants = {name: step(nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol, regularizers=regs))
                    for name, regs in VARIANTS.items()}
        result = measure(variants, "no regularizer", timing)
        report.table(f"{size}, training step", result, TARGETS, meta={"size": size.spec, "tol": args.tol})
    report.finish()


if __name__ == "__main__":
    main()
