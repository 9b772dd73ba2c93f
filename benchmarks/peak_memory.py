"""Peak memory of a training step with step statistics against plain ``torchdiffeq.odeint``.

Each configuration runs in a fresh interpreter (peak resident memory cannot be reset within one):
it warms up on a batch of 8, then runs two training steps at the measured size the way a training
loop does, ``loss = z.square().mean() [+ block.regularization()]; loss.backward()``, with ``loss``
and ``z`` rebound only when the next step has computed its own. It reports the growth of peak
resident memory (``ru_maxrss``) over the warm-up level after the first step and after the second.
A solve whose statistics kept the previous step's graph alive until the next forward had finished
would show in the second column: the second step would need its own graph on top of the first's.

Configurations (dopri5, rtol = atol = ``--tol``, MLP field dim-width-dim tanh, default size
batch 1024, dim 64, width 256):

    torchdiffeq.odeint(field, x, [0, 1])                     the baseline, and its A/A control
    ODEBlock(field), statistics on
    ODEBlock(field, record_stats=False)
    ODEBlock(field, regularizers={"stiffness": 0.0285})      keeps every stage for the estimate
    control: torchdiffeq.odeint with ``backward(retain_graph=True)``, so each step's graph lives
        until ``loss`` is rebound: what a retained graph looks like (the second column grows by a
        whole step's graph)

Children run with glibc's mmap threshold fixed at 128 KiB (``_common.MMAP_THRESHOLD``: peak RSS
then follows the live tensors instead of heap fragmentation; ``--malloc-default`` turns that off).
Every configuration is repeated ``--repeats`` times (processes in a seeded random order); the
table shows the median growth, its spread (min-max) and the ratio of medians to the baseline.
Target (issue 11): statistics on within 2% of plain torchdiffeq (ratio <= 1.02).

    python benchmarks/peak_memory.py [--sizes 1024,64,256] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

from _common import Report, Size, check_target, json_path, parse_size, positive_float, positive_int, run_child, setup

CHILD = r"""
import json, resource, sys
import torch, torchdiffeq
import nde_plugins as nde

config, batch, dim, width, tol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.manual_seed(0)
torch.set_num_threads(1)


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, dim))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y)


field = Field()
t = torch.tensor([0.0, 1.0])
common = dict(method="dopri5", rtol=tol, atol=tol)
retain = config == "plain_retained"
if config in ("plain", "plain_retained"):
    def forward(x):
        return torchdiffeq.odeint(field, x, t, **common)[-1], 0.0
else:
    options = {"stats": {}, "no_stats": {"record_stats": False}, "stiffness": {"regularizers": {"stiffness": 0.0285}}}
    block = nde.ODEBlock(field, **common, **options[config])

    def forward(x):
        z = block(x)
        return z, block.regularization() if block.regularizers else 0.0

peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
z, loss = forward(torch.randn(8, dim))  # warm-up: code paths and caches, at a size that leaves no mark
loss = z.square().mean() + loss
loss.backward()
x = torch.randn(batch, dim)
before = peak()
growth, nfe = [], []
for _ in range(2):
    field.nfe = 0
    z, reg = forward(x)
    loss = z.square().mean() + reg
    # The control keeps each step's graph until ``loss`` is rebound, after the next forward.
    loss.backward(retain_graph=retain)
    growth.append(peak() - before)
    nfe.append(field.nfe)
print(json.dumps({"kib": growth, "nfe": nfe}))
"""

CONFIGS = {
    "torchdiffeq.odeint": "plain",
    "torchdiffeq.odeint (A/A)": "plain",
    "ODEBlock, statistics on": "stats",
    "ODEBlock, record_stats=False": "no_stats",
    "ODEBlock, stiffness regularizer": "stiffness",
    "control: previous graph kept": "plain_retained",
}
BASELINE = "torchdiffeq.odeint"
#: Upper bounds on the ratio of peak memory, after step 1 and after steps 1+2 (a miss in either is marked).
TARGETS = {"ODEBlock, statistics on": 1.02}


def run(config: str, size: Size, tol: float, fixed_mmap: bool = True) -> dict:
    """One fresh interpreter measuring ``config``; a failing child stops the script with its error."""
    return run_child(CHILD, [config, str(size.batch), str(size.dim), str(size.width), str(tol)],
                     f"{config!r} at {size}", fixed_mmap)


def ratios(samples: dict[str, list[dict]]) -> dict[str, tuple[float, float]]:
    """Each configuration's median growth after step 1 and after steps 1+2, over the baseline's."""
    def median(name: str, step: int) -> float:
        return statistics.median(s["kib"][step] for s in samples[name])

    return {name: (median(name, 0) / median(BASELINE, 0), median(name, 1) / median(BASELINE, 1)) for name in samples}


def verdicts(samples: dict[str, list[dict]]) -> dict[str, dict]:
    """For ``--json``: each target, both ratios and whether either is above the target."""
    out = {}
    for name, (one, two) in ratios(samples).items():
        if name in TARGETS:
            out[name] = {"target": TARGETS[name], "ratio_step1": one, "ratio_steps12": two,
                         "misses_target": check_target(TARGETS[name], max(one, two)).misses}
    return out


def table(samples: dict[str, list[dict]]) -> str:
    """Markdown: medians of the growth after step 1 and after steps 1+2, ratios to the baseline, spread, NFE,
    target (a miss in either ratio is marked as ``_common.format_table`` marks one)."""
    def mib(name: str, step: int) -> list[float]:
        return [s["kib"][step] / 1024 for s in samples[name]]

    lines = ["| configuration | peak MiB, step 1 [min-max] | ratio | peak MiB, steps 1+2 [min-max] | ratio | NFE | "
             "target |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, (ratio1, ratio2) in ratios(samples).items():
        one, two = mib(name, 0), mib(name, 1)
        nfe = sorted({n for s in samples[name] for n in s["nfe"]})
        target = check_target(TARGETS[name], max(ratio1, ratio2)).cell if name in TARGETS else ""
        lines.append(f"| {name} | {statistics.median(one):.1f} [{min(one):.1f}-{max(one):.1f}] | "
                     f"{ratio1:.3f} | {statistics.median(two):.1f} "
                     f"[{min(two):.1f}-{max(two):.1f}] | {ratio2:.3f} | "
                     f"{'/'.join(map(str, nfe))} | {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[Size(1024, 64, 256)], metavar="B,D,W",
                        help="problem sizes as batch,dim,width triples (default: 1024,64,256)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="processes per configuration (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one process per configuration")
    parser.add_argument("--tol", type=positive_float, default=1e-6, help="rtol = atol (default 1e-6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of the processes")
    parser.add_argument("--json", type=json_path, default=None, metavar="PATH", help="also write the raw samples here")
    parser.add_argument("--malloc-default", action="store_true",
                        help="keep glibc's adaptive mmap threshold (noisier; see MMAP_THRESHOLD in _common.py)")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    setup()  # as in the children, so the header's thread count is theirs
    report = Report(args, f"peak resident memory of two training steps, dopri5 rtol=atol={args.tol:g}, field "
                          f"dim-width-dim tanh; fresh process per sample, {repeats} per configuration", timed=False)
    for size in args.sizes:
        jobs = [name for name in CONFIGS for _ in range(repeats)]
        random.Random(args.seed).shuffle(jobs)  # machine state drifts: spread it over the configurations
        samples: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for name in jobs:
            samples[name].append(run(CONFIGS[name], size, args.tol, not args.malloc_default))
        print()
        print(f"{size}, forward+backward; growth of peak RSS over the warm-up level, {repeats} process(es) each "
              f"in random order (seed {args.seed})")
        print()
        print(table(samples))
        sys.stdout.flush()
        report.record(f"samples {size.spec}", samples)
        report.record(f"targets {size.spec}", verdicts(samples))
    report.finish()


if __name__ == "__main__":
    main()
