"""Peak memory and time of a regularized training step: gradient="backprop", "checkpoint" and "adjoint".

Each sample is a fresh interpreter (peak resident memory cannot be reset within one). It builds an
``ODEBlock`` (dopri5, rtol = atol = ``--tol``, an MLP field dim-width-dim tanh, the regularizer of
``--regularizer``), warms up on a batch of 8, then runs training steps at the measured size the
way a training loop does: ``loss = z.square().mean() + block.regularization(); loss.backward()``.
It reports the growth of peak resident memory (``ru_maxrss``) over the warm-up level during the
first step, and the process CPU time of the following ``--timed`` steps (median). The number of
steps is set with torchdiffeq's ``max_step`` option: ``max_step = 1 / N`` over [0, 1] gives about
N accepted steps (the step count of every configuration is printed beside it).

Rows per step count N (processes of all rows in one seeded random order, ``--repeats`` each):

    backprop                 the baseline: the graph of every step is kept
    backprop (A/A)           the baseline again: the noise floor
    checkpoint               segments growing by one step (the default)
    adjoint                  odeint_adjoint; a regularizer with an integrand is integrated with the
                             solve (kinetic_energy, jacobian_frobenius), any other is left out and
                             the row says so

Ratios are of medians, to the baseline at the same N. Targets (issue 21): checkpoint peak at
N = 400 <= 0.35x backprop's, and checkpoint time <= 1.6x backprop's at every N. Children run with
glibc's mmap threshold fixed (``_common.MMAP_THRESHOLD``).

``--plot PATH`` draws peak memory and CPU time per step against N, log-log, one line per mode (the
first size), with a square-root slope for reference.

    python benchmarks/gradient_memory.py [--steps 25 100 400 1600] [--regularizer kinetic_energy]
                                          [--sizes 128,16,128] [--repeats 3] [--plot PATH] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

from _common import Report, Size, check_target, json_path, parse_size, positive_float, positive_int, run_child, setup

from nde_plugins.experiments.script import figure_file

CHILD = r"""
import json, resource, sys, time
import torch
import nde_plugins as nde

mode, regularizer, steps, batch, dim, width, tol, timed = sys.argv[1:9]
steps, batch, dim, width, tol, timed = int(steps), int(batch), int(dim), int(width), float(tol), int(timed)
torch.manual_seed(0)
torch.set_num_threads(1)


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, dim))

    def forward(self, t, y):
        return self.net(y)


regularizers = {} if regularizer == "none" else {regularizer: 0.1}
if mode == "adjoint" and regularizers and not hasattr(nde.get_registry().get("step_regularizer", regularizer)(),
                                                       "integrand"):
    regularizers = {}  # the adjoint cannot serve it: the row solves without (and says so)
block = nde.ODEBlock(Field(), method="dopri5", rtol=tol, atol=tol, options={"max_step": 1.0 / steps,
                     "first_step": 1.0 / steps}, gradient=mode, regularizers=regularizers or None)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def step(x):
    z = block(x)
    loss = z.square().mean() + block.regularization()
    loss.backward()
    block.zero_grad(set_to_none=True)
    return block.stats


step(torch.randn(8, dim))  # warm-up: code paths and caches, at a size that leaves no mark
x = torch.randn(batch, dim)
before = peak()
stats = step(x)
growth = peak() - before
times = []
for _ in range(timed):
    start = time.process_time()
    step(x)
    times.append(time.process_time() - start)
print(json.dumps({"kib": growth, "cpu_s": sorted(times)[len(times) // 2], "steps": stats.steps_accepted,
                  "nfe": stats.nfe_forward, "nfe_back": stats.nfe_backward + stats.nfe_replay,
                  "regularized": bool(regularizers)}))
"""

MODES = {"backprop": "backprop", "backprop (A/A)": "backprop", "checkpoint": "checkpoint", "adjoint": "adjoint"}
BASELINE = "backprop"
MEMORY_TARGET = ("checkpoint", 400, 0.35)  # (row, steps, bound on the peak ratio)
TIME_TARGET = ("checkpoint", 1.6)  # (row, bound on the time ratio at every step count)


def run(mode: str, regularizer: str, steps: int, size: Size, tol: float, timed: int) -> dict:
    """One fresh interpreter; a failing child stops the script with its error."""
    return run_child(CHILD, [mode, regularizer, str(steps), str(size.batch), str(size.dim), str(size.width),
                             str(tol), str(timed)], f"{mode} at {steps} steps, {size}")


def table(samples: dict[int, dict[str, list[dict]]]) -> tuple[str, dict]:
    """Markdown rows per step count and mode; the verdicts of both targets for ``--json``."""
    lines = ["| steps N | gradient | accepted steps | NFE fwd / bwd | peak MiB [min-max] | peak ratio | "
             "CPU s/step | time ratio | target |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = {}
    for steps, by_mode in samples.items():
        base_mib = statistics.median(s["kib"] for s in by_mode[BASELINE]) / 1024
        base_s = statistics.median(s["cpu_s"] for s in by_mode[BASELINE])
        for name, runs in by_mode.items():
            mib = [s["kib"] / 1024 for s in runs]
            cpu = statistics.median(s["cpu_s"] for s in runs)
            peak_ratio, time_ratio = statistics.median(mib) / base_mib, cpu / base_s
            cells = []
            if name == TIME_TARGET[0]:
                verdict = check_target(TIME_TARGET[1], time_ratio)
                verdicts[f"time {name} N={steps}"] = {"target": TIME_TARGET[1], "ratio": time_ratio,
                                                      "misses_target": verdict.misses}
                cells.append(f"time {verdict.cell}")
            if (name, steps) == MEMORY_TARGET[:2]:
                verdict = check_target(MEMORY_TARGET[2], peak_ratio)
                verdicts[f"peak {name} N={steps}"] = {"target": MEMORY_TARGET[2], "ratio": peak_ratio,
                                                      "misses_target": verdict.misses}
                cells.append(f"peak {verdict.cell}")
            label = name if all(s["regularized"] for s in runs) else f"{name}, without the regularizer"
            lines.append(f"| {steps} | {label} | {'/'.join(sorted({str(s['steps']) for s in runs}))} | "
                         f"{runs[0]['nfe']} / {runs[0]['nfe_back']} | {statistics.median(mib):.1f} "
                         f"[{min(mib):.1f}-{max(mib):.1f}] | {peak_ratio:.3f} | {cpu:.3f} | {time_ratio:.3f} | "
                         f"{'; '.join(cells)} |")
    return "\n".join(lines), verdicts


def plot(samples: dict[int, dict[str, list[dict]]], size: Size, regularizer: str, path: str) -> None:
    """Peak MiB and CPU s per step against N, one line per mode (the A/A row left out), log-log."""
    from nde_plugins.plots import Curves, plot_curves

    steps = sorted(samples)
    modes = [name for name in MODES if "A/A" not in name]

    def lines(key: str, scale: float) -> dict:
        return {name: (steps, [[s[key] / scale for s in samples[n][name]] for n in steps]) for name in modes}

    memory = lines("kib", 1024)
    # sqrt(N) through checkpoint's first point: the slope the segments should follow.
    first = sum(memory["checkpoint"][1][0]) / len(memory["checkpoint"][1][0])
    memory["sqrt(N) slope"] = (steps, [[first * (n / steps[0]) ** 0.5] for n in steps])
    styles = {"sqrt(N) slope": {"color": "black", "linestyle": ":", "marker": None}}
    plot_curves([Curves("peak memory of one training step", "accepted steps N", "MiB above the warm-up level",
                        memory, "log", "log", styles=styles),
                 Curves("CPU time of one training step", "accepted steps N", "s", lines("cpu_s", 1), "log", "log")],
                path, f"gradient modes, dopri5, {size}, regularizer {regularizer} (the adjoint solves without one "
                      "it cannot serve)",
                caption="Each point: the mean over fresh processes, error bars one standard deviation. "
                        "benchmarks/gradient_memory.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[25, 100, 400, 1600], metavar="N",
                        help="step counts to measure (default: 25 100 400 1600)")
    parser.add_argument("--regularizer", default="error_estimate",
                        help="a registered step regularizer, or none (default error_estimate, seed 004's; the adjoint "
                             "row solves without a regularizer it cannot serve)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[Size(128, 16, 128)], metavar="B,D,W",
                        help="problem sizes as batch,dim,width triples (default: 128,16,128)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="processes per row (default 3)")
    parser.add_argument("--timed", type=positive_int, default=3, help="timed steps per process (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one process per row, steps 25 and 100")
    parser.add_argument("--tol", type=positive_float, default=1e-3,
                        help="rtol = atol (default 1e-3: max_step, not the error, sets the step count)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of the processes")
    parser.add_argument("--json", type=json_path, default=None, metavar="PATH", help="also write the raw samples here")
    parser.add_argument("--plot", type=figure_file, default=None, metavar="PATH",
                        help="draw memory and time against N for the first size (.png, .pdf or .svg)")
    args = parser.parse_args()
    repeats, steps_list = (1, [25, 100]) if args.quick else (args.repeats, args.steps)
    setup()
    if args.plot is not None:
        from nde_plugins.plots import require_matplotlib

        require_matplotlib()  # before the runs, not after them
    report = Report(args, f"peak resident memory and CPU time of one training step, dopri5 rtol=atol={args.tol:g} "
                          f"with max_step = 1/N, regularizer {args.regularizer}; fresh process per sample, "
                          f"{repeats} per row", timed=False)
    for size in args.sizes:
        jobs = [(steps, name) for steps in steps_list for name in MODES for _ in range(repeats)]
        random.Random(args.seed).shuffle(jobs)  # machine state drifts: spread it over the rows
        samples: dict[int, dict[str, list[dict]]] = {steps: {name: [] for name in MODES} for steps in steps_list}
        for steps, name in jobs:
            samples[steps][name].append(run(MODES[name], args.regularizer, steps, size, args.tol, args.timed))
        text, verdicts = table(samples)
        print()
        print(f"{size}; growth of peak RSS over the warm-up level during one step; CPU time per step (median of "
              f"{args.timed}); ratios to backprop at the same N")
        print()
        print(text)
        sys.stdout.flush()
        report.record(f"samples {size.spec}", {str(k): v for k, v in samples.items()})
        report.record(f"targets {size.spec}", verdicts)
        if args.plot is not None and size == args.sizes[0]:
            plot(samples, size, args.regularizer, str(args.plot))
            print(f"\nfigure written to {args.plot}")
    report.finish()


if __name__ == "__main__":
    main()
