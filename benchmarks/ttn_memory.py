"""Peak memory of SDEBlock's test-time noise (TTN) against the number of samples.

Each configuration runs in a fresh interpreter (peak resident memory cannot be reset within one):
an eval-mode forward under ``torch.no_grad()`` of a 16 x 8 batch, drift 8-32-8, Euler-Maruyama
dt = 0.1 on [0, 1], additive noise. It prints the peak resident-set growth over the set-up and
that growth per 1000 samples, for samples solved in chunks (``samples_per_solve``, default 32)
and all in one batched solve (``samples_per_solve=samples``). A solve of the same model without
noise is the A/A-style reference row (what one forward costs at all). Children run with glibc's
mmap threshold fixed (``_common.MMAP_THRESHOLD``; ``--malloc-default`` turns that off), so the peak
follows the live tensors rather than heap fragmentation.

    python benchmarks/ttn_memory.py [--samples 1000 4000] [--json PATH]
"""

from __future__ import annotations

import argparse

from _common import Report, json_path, positive_int, run_child, setup

CHILD = r"""
import json, resource, sys
import torch
import nde_plugins as nde

samples, per_solve, noise = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
torch.manual_seed(0)
torch.set_num_threads(1)
drift = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
block = nde.SDEBlock(lambda t, h: drift(h), "additive", {"sigma": 0.1}, dt=0.1, seed=0,
                     test_time_noise=noise, samples=samples, samples_per_solve=per_solve).eval()
x = torch.randn(16, 8)
with torch.no_grad():
    # Warm up torch and torchsde on one small solve, so the measured call pays only for its size.
    nde.SDEBlock(lambda t, h: drift(h), "additive", {"sigma": 0.1}, dt=0.1, seed=0).eval()(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = block(x, return_samples=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"kib": after - before, "nfe": block.stats.nfe_forward, "shape": list(out.shape)}))
"""


def run(samples: int, per_solve: int, noise: bool, fixed_mmap: bool = True) -> dict:
    """One fresh interpreter; a failing child stops the script with its error."""
    return run_child(CHILD, [str(samples), str(per_solve), "1" if noise else "0"], f"{samples} samples", fixed_mmap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=positive_int, nargs="+", default=[1000, 4000])
    parser.add_argument("--json", type=json_path, default=None, metavar="PATH", help="also write the rows here")
    parser.add_argument("--malloc-default", action="store_true", help="keep glibc's adaptive mmap threshold")
    args = parser.parse_args()
    fixed = not args.malloc_default
    setup()  # as in the children, so the header's thread count is theirs
    report = Report(args, "SDEBlock test-time noise, eval under no_grad, batch 16 x 8, drift 8-32-8, Euler-Maruyama "
                          "dt=0.1; peak RSS growth of one forward (fresh process per row)", timed=False)
    rows = []
    print(f"{'configuration':44s} {'samples':>8s} {'peak MiB':>9s} {'MiB/1000 samples':>17s} {'drift NFE':>10s}")
    ref = run(1, 1, noise=False, fixed_mmap=fixed)
    rows.append({"configuration": "noise off", "samples": 1, **ref})
    print(f"{'noise off (one solve, reference)':44s} {1:8d} {ref['kib'] / 1024:9.2f} {'':>17s} {ref['nfe']:10d}")
    for samples in args.samples:
        for label, per_solve in (("chunked, samples_per_solve=32", 32), ("one batched solve", samples)):
            row = run(samples, per_solve, noise=True, fixed_mmap=fixed)
            rows.append({"configuration": label, "samples": samples, **row})
            mib = row["kib"] / 1024
            print(f"{label:44s} {samples:8d} {mib:9.2f} {mib / samples * 1000:17.2f} {row['nfe']:10d}")
    report.record("rows", rows)
    report.finish()


if __name__ == "__main__":
    main()
