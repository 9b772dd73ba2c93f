"""Registered tableaux against torchdiffeq's own solvers on the same problem.

Pairs that compute the same thing step for step:
    rk4_uv (u=1/3, v=2/3)  vs  torchdiffeq rk4      (the 3/8 rule, fixed grid)
    dormand_prince         vs  torchdiffeq dopri5   (adaptive)

Problem: an MLP vector field (dim -> width -> width -> dim, tanh), batch 256, forward solve on
[0, 1] and backward through the solver. Repeats are interleaved (A, B, then B, A, ...) so machine noise
hits both sides alike; the ratio is median(ours) / median(torchdiffeq). NFE is counted by the
vector field and must be equal for each pair.

    python benchmarks/tableau_overhead.py [--repeats 30] [--dim 16] [--width 64]
"""

from __future__ import annotations

import argparse

import torch
import torchdiffeq
from _common import CountingMLP, interleaved_medians, size_arguments

import nde_plugins  # noqa: F401  - registers the tableaux with torchdiffeq


def one_run(
    field: CountingMLP, y0: torch.Tensor, t: torch.Tensor, method: str, options: dict, tol: float
) -> int:
    field.nfe = 0
    field.zero_grad(set_to_none=True)
    y = torchdiffeq.odeint(field, y0, t, method=method, options=options, rtol=tol, atol=tol)
    y[-1].square().mean().backward()
    return field.nfe


CASES = [
    ("rk4_uv(1/3,2/3) vs rk4", ("rk4_uv", {"u": 1 / 3, "v": 2 / 3, "step_size": 0.05}), ("rk4", {"step_size": 0.05})),
    ("dormand_prince vs dopri5", ("dormand_prince", {}), ("dopri5", {})),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser, repeats=30)
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # keep timings about the solver layer, not thread scheduling
    field = CountingMLP(args.dim, args.width, hidden=2)
    y0 = torch.randn(args.batch, args.dim)
    t = torch.tensor([0.0, 1.0])

    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, batch {args.batch}, "
          f"dim {args.dim}, width {args.width}, {args.repeats} interleaved repeats, forward+backward")
    print(f"{'case':28s} {'ours ms':>9s} {'upstream ms':>12s} {'ratio':>7s} {'NFE ours':>9s} {'NFE up':>7s}")
    for label, (ours, ours_opts), (upstream, up_opts) in CASES:
        nfe: dict[str, int] = {}

        def run(key, method, options, nfe=nfe):
            return lambda: nfe.__setitem__(key, one_run(field, y0, t, method, options, args.tol))

        m_ours, m_up = interleaved_medians([run("ours", ours, ours_opts), run("up", upstream, up_opts)], args.repeats)
        flag = "" if nfe["ours"] == nfe["up"] else "  NFE MISMATCH"
        print(f"{label:28s} {m_ours * 1e3:9.2f} {m_up * 1e3:12.2f} {m_ours / m_up:7.3f} "
              f"{nfe['ours']:9d} {nfe['up']:7d}{flag}")

if __name__ == "__main__":
    main()
