"""The benchmark harness shared by every script in ``benchmarks/``.

One timing function, ``measure``: named variants, one baseline, a fresh random order every round
(seeded), process CPU time as the primary clock with wall time beside it, an A/A control (the
baseline timed a second time under another name) in every table, and a paired bootstrap interval
on each ratio. Why each of these:

- A fixed or rotating order lets a variant inherit the cache and allocator state its predecessor
  left behind, always the same predecessor; with a rotating order an A/A pair read 1.03 to 1.13.
  A fresh random order every round spreads that state over all variants.
- Process CPU time does not count the time the process waits for a core another process holds, so
  it is steadier than wall time on a shared machine; wall time is printed beside it because a
  user waits on wall time.
- The A/A row is the noise floor of that very table: a ratio whose interval overlaps the A/A
  row's is not an effect.
- Every variant runs once per round, so round i of two variants shares the machine's state; the
  bootstrap resamples whole rounds (pairs), which keeps that pairing.

Also here: the options every script shares (``--sizes``, ``--quick``, ``--rounds``, ``--budget``,
``--seed``, ``--json``), the markdown table printer, targets (an upper bound on a row's CPU ratio,
declared by the script for a whole table or per row, and a row that misses its target is marked
in the table and in ``--json``), and the counting MLP vector field.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

# ------------------------------------------------------------------------------------------------
# Problem sizes


class Size(NamedTuple):
    """A problem size: ``batch`` samples of a ``dim``-dimensional state, a field of hidden ``width``."""

    batch: int
    dim: int
    width: int

    def __str__(self) -> str:
        return f"batch {self.batch}, dim {self.dim}, width {self.width}"

    @property
    def spec(self) -> str:
        return f"{self.batch},{self.dim},{self.width}"


#: The sizes of issue 11: a single tiny sample, a small field, the repository size, a large batch.
SIZES: tuple[Size, ...] = (Size(1, 2, 16), Size(16, 8, 32), Size(256, 16, 64), Size(1024, 64, 256))


def parse_size(text: str) -> Size:
    """``"batch,dim,width"`` (three positive integers) as a ``Size``; argparse shows the error on one line."""
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or len(parts) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"size {text!r} must be three positive integers batch,dim,width (e.g. 256,16,64)"
        )
    return Size(*values)


def json_path(text: str) -> Path:
    """A file path whose folder exists, checked before any time is spent measuring."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"--json {text!r} is a folder; give a file name such as {text}/results.json")
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"--json {text!r}: folder {str(path.parent)!r} does not exist; "
                                         "create it first")
    return path


# ------------------------------------------------------------------------------------------------
# How long to time


@dataclass(frozen=True)
class Timing:
    """How many rounds a table gets.

    ``rounds`` fixes the count. Otherwise the count adapts to the problem: ``budget_s`` divided by the
    time one round took in the warm-up, clamped to [``min_rounds``, ``max_rounds``], so tiny solves get
    hundreds of rounds and batch 1024 a handful, and every table costs about the same time.
    """

    rounds: int | None = None
    budget_s: float = 12.0
    min_rounds: int = 7
    max_rounds: int = 400
    warmup: int = 2
    seed: int = 0
    resamples: int = 2000

    def __post_init__(self) -> None:
        if self.rounds is not None and self.rounds < 2:
            raise ValueError(f"rounds must be at least 2 (a median and an interval need several); got {self.rounds}")
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be a positive number of seconds; got {self.budget_s}")
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 2 <= min_rounds <= max_rounds; got {self.min_rounds} and {self.max_rounds}")
        if self.warmup < 1:
            raise ValueError(f"warmup must be at least 1 pass (it also sizes the round count); got {self.warmup}")

    def rounds_for(self, round_s: float) -> int:
        """The round count for a round that took ``round_s`` seconds in the warm-up."""
        if self.rounds is not None:
            return self.rounds
        wanted = self.budget_s / max(round_s, 1e-9)
        return int(min(max(math.ceil(wanted), self.min_rounds), self.max_rounds))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Timing:
        quick = getattr(args, "quick", False)
        budget = args.budget if getattr(args, "budget", None) is not None else (1.5 if quick else 12.0)
        return cls(rounds=getattr(args, "rounds", None), budget_s=budget, min_rounds=3 if quick else 7,
                   max_rounds=25 if quick else 400, warmup=1 if quick else 2, seed=getattr(args, "seed", 0))


def round_count(text: str) -> int:
    """An argparse type: an integer of at least 2 (a round count)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 2")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a positive finite number (seconds, tolerances, steps)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def make_parser(doc: str | None, sizes: Sequence[Size] = SIZES) -> argparse.ArgumentParser:
    """A parser with the options every timing script shares; ``sizes`` is the script's default sweep."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = " ".join(s.spec for s in sizes)
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=list(sizes), metavar="B,D,W",
                        help=f"problem sizes as batch,dim,width triples (default: {default})")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: about 1.5 s per table, 3-25 rounds (numbers are rough)")
    parser.add_argument("--rounds", type=round_count, default=None,
                        help="a fixed number of rounds per table (default: adapt to the size, see --budget)")
    parser.add_argument("--budget", type=positive_float, default=None,
                        help="seconds of timing per table when the rounds adapt (default 12, --quick 1.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of the variants (default 0)")
    parser.add_argument("--json", type=json_path, default=None, metavar="PATH",
                        help="also write every table, with the raw per-round times, to this JSON file")
    return parser


def setup(seed: int = 0) -> None:
    """One intra-op thread (the timings are about the layer, not thread scheduling) and a fixed model seed."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# Statistics (pure functions; tested in tests/test_benchmark_harness.py)


def random_orders(names: Sequence[str], rounds: int, seed: int) -> list[list[str]]:
    """One fresh random permutation of ``names`` per round, reproducible from ``seed``."""
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def _medians(samples: torch.Tensor) -> torch.Tensor:
    """Row medians, the mean of the two middle values for an even count (as ``statistics.median``)."""
    ordered = samples.sort(dim=-1).values
    n = samples.shape[-1]
    return (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2


def bootstrap_ratio(values: Sequence[float], baseline: Sequence[float], resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for median(values) / median(baseline), resampling paired rounds.

    ``values[i]`` and ``baseline[i]`` were timed in the same round; each resample draws round
    indices with replacement and takes the ratio of the two medians over the same indices. With
    fewer than about 10 rounds the interval is rough (few distinct medians exist).
    """
    if len(values) != len(baseline):
        raise ValueError(f"values and baseline must pair round by round; got {len(values)} and {len(baseline)}")
    if len(values) < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 rounds; got {len(values)}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95; got {level}")
    if resamples < 10:
        raise ValueError(f"resamples must be at least 10; got {resamples}")
    generator = torch.Generator().manual_seed(seed)
    n = len(values)
    idx = torch.randint(0, n, (resamples, n), generator=generator)
    v = torch.tensor(values, dtype=torch.float64)[idx]
    b = torch.tensor(baseline, dtype=torch.float64)[idx]
    ratios = _medians(v) / _medians(b)
    tail = (1 - level) / 2
    low, high = torch.quantile(ratios, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high


@dataclass(frozen=True)
class Row:
    """One variant of a table: medians over rounds, ratios to its baseline, the NFE it reported."""

    name: str
    against: str
    cpu_s: float
    wall_s: float
    ratio_cpu: float
    ci_low: float
    ci_high: float
    ratio_wall: float
    nfe: list[int | None]
    nfe_matches: bool  # the same NFE as its baseline in every round (True when either reports none)

    @property
    def nfe_text(self) -> str:
        known = [n for n in self.nfe if n is not None]
        if not known:
            return ""
        low, high = min(known), max(known)
        text = str(low) if low == high else f"{low}-{high}"
        return text if self.nfe_matches else text + " (!)"


@dataclass
class Measurement:
    """What ``measure`` returns: the rows in the order the variants were given, and how they were timed."""

    rows: list[Row]
    baseline: str
    rounds: int
    seed: int
    cpu: dict[str, list[float]] = field(repr=False)
    wall: dict[str, list[float]] = field(repr=False)

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no variant {name!r}; have {[r.name for r in self.rows]}")


def control_name(baseline: str) -> str:
    return f"{baseline} (A/A)"


def summarize(cpu: Mapping[str, Sequence[float]], wall: Mapping[str, Sequence[float]],
              nfe: Mapping[str, Sequence[int | None]], against: Mapping[str, str], resamples: int = 2000,
              seed: int = 0) -> list[Row]:
    """Rows for per-round times: ``against[name]`` is each variant's baseline (a baseline is its own)."""
    rows = []
    for name in cpu:
        base = against[name]
        lo, hi = bootstrap_ratio(cpu[name], cpu[base], resamples=resamples, seed=seed)
        known = [(a, b) for a, b in zip(nfe[name], nfe[base]) if a is not None and b is not None]
        rows.append(Row(
            name=name, against=base, cpu_s=statistics.median(cpu[name]), wall_s=statistics.median(wall[name]),
            ratio_cpu=statistics.median(cpu[name]) / statistics.median(cpu[base]), ci_low=lo, ci_high=hi,
            ratio_wall=statistics.median(wall[name]) / statistics.median(wall[base]), nfe=list(nfe[name]),
            nfe_matches=all(a == b for a, b in known),
        ))
    return rows


# ------------------------------------------------------------------------------------------------
# The timing function


Variant = Callable[[], "int | None"]


def measure(variants: Mapping[str, Variant], baseline: str, timing: Timing | None = None,
            against: Mapping[str, str] | None = None, before_round: Callable[[], object] | None = None) -> Measurement:
    """Time named variants against ``baseline``, in a fresh random order every round.

    Args:
        variants: name -> a callable doing one timed call; it may return the call's NFE (an int),
            which is checked against the baseline's NFE of the same round.
        baseline: the name of the variant the ratios divide by. It is also timed a second time as
            ``"<baseline> (A/A)"``, the control row every table shows.
        timing: rounds (fixed, or adapted to a time budget from the warm-up), warm-up passes, seed
            (default ``Timing()``).
        against: variant -> its own baseline, for tables holding several pairs; unlisted variants
            are compared with ``baseline``. Every named baseline must be a variant.
        before_round: runs untimed before every round (and warm-up pass), e.g. to fix the round's
            random draw for all variants.

    Each call is timed with ``time.process_time`` (process CPU time) and ``time.perf_counter`` (wall).
    Garbage collection runs between rounds and is off inside a round (as ``timeit`` does), so a
    collection triggered by one variant's garbage is not charged to another; objects alive before
    the first round are frozen (``gc.freeze``) for the duration, so those collections stay cheap.
    """
    timing = timing or Timing()
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not among the variants {list(variants)}")
    against = dict(against or {})
    for name, base in against.items():
        if name not in variants or base not in variants:
            raise ValueError(f"against maps {name!r} to {base!r}; both must be variants of {list(variants)}")
    control = control_name(baseline)
    if control in variants:
        raise ValueError(f"{control!r} is the name of the A/A control; rename that variant")
    runs: dict[str, Variant] = {}
    for name, run in variants.items():  # the control row sits right below its baseline
        runs[name] = run
        if name == baseline:
            runs[control] = run
    pairs = {name: against.get(name, baseline) for name in runs}
    pairs[control] = baseline
    for base in set(pairs.values()):
        pairs[base] = base

    names = list(runs)
    round_s = 0.0
    for _ in range(timing.warmup):
        if before_round is not None:
            before_round()
        start = time.perf_counter()
        for name in names:
            runs[name]()
        round_s = time.perf_counter() - start
    rounds = timing.rounds_for(round_s)

    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    nfe: dict[str, list[int | None]] = {name: [] for name in names}
    enabled = gc.isenabled()
    # Everything alive now (torch's modules, the variants' models) moves to a generation collections
    # skip: a full collection over it takes ~90 ms, which per round would dwarf a tiny solve's timing.
    gc.collect()
    gc.freeze()
    try:
        for order in random_orders(names, rounds, timing.seed):
            if before_round is not None:
                before_round()
            gc.collect()
            gc.disable()
            for name in order:
                run = runs[name]
                c0, w0 = time.process_time(), time.perf_counter()
                result = run()
                w1, c1 = time.perf_counter(), time.process_time()
                cpu[name].append(c1 - c0)
                wall[name].append(w1 - w0)
                nfe[name].append(result if isinstance(result, int) else None)
            if enabled:
                gc.enable()
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
    rows = summarize(cpu, wall, nfe, pairs, resamples=timing.resamples, seed=timing.seed)
    return Measurement(rows, baseline, rounds, timing.seed, cpu, wall)


# ------------------------------------------------------------------------------------------------
# Targets

#: The mark of a row whose ratio is above its target.
MISSES = "MISSES"
#: Decimals of a ratio in every table, and of the comparison with a target.
RATIO_DIGITS = 3

_TARGET_TEXT = re.compile(r"^\s*<=\s*(?P<bound>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


def as_target(value: float | str | None, what: str = "target") -> float | None:
    """The upper bound a target declares: ``1.05`` or ``"<= 1.05"`` -> 1.05; ``None`` -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _TARGET_TEXT.match(value)
        if match is None:
            raise ValueError(f"{what} {value!r}: a target is an upper bound on the ratio, a number such as 1.05 "
                             "or the text '<= 1.05'")
        value = float(match["bound"])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} {value!r}: a target is a positive finite upper bound on the ratio, e.g. 1.05")
    return float(value)


def resolve_targets(measurement: Measurement, target: float | str | None = None,
                    targets: Mapping[str, float | str | None] | None = None) -> dict[str, float]:
    """Each row's upper bound: ``target`` for every row compared with a baseline (not the baselines
    themselves, not the A/A control), then ``targets`` per row (``None`` there: that row has none).

    A row name in ``targets`` that is not in the table is refused: a misspelt name would leave a
    row without its target, silently.
    """
    bound = as_target(target, "table target")
    control = control_name(measurement.baseline)
    resolved = {}
    if bound is not None:
        resolved = {r.name: bound for r in measurement.rows if r.name != r.against and r.name != control}
    names = [r.name for r in measurement.rows]
    for name, value in (targets or {}).items():
        if name not in names:
            raise ValueError(f"target for {name!r}: no such row; the rows are {names}")
        row_bound = as_target(value, f"target of {name!r}")
        if row_bound is None:
            resolved.pop(name, None)
        else:
            resolved[name] = row_bound
    return resolved


class Verdict(NamedTuple):
    """How a ratio compares with its target ``bound`` (an upper bound on the ratio)."""

    bound: float
    misses: bool  # the ratio is above the bound
    overlaps: bool  # ... but the lower end of its 95% interval is not: the miss may be noise

    @property
    def mark(self) -> str:
        """``""`` (meets it), ``"**MISSES**"``, or ``"**MISSES** (CI overlaps)"`` when the interval still reaches it."""
        if not self.misses:
            return ""
        return f"**{MISSES}** (CI overlaps)" if self.overlaps else f"**{MISSES}**"

    @property
    def cell(self) -> str:
        """The table's target cell: ``"<= 1.05"``, followed by the mark of a miss."""
        return " ".join(filter(None, (f"<= {self.bound:g}", self.mark)))


def check_target(bound: float, ratio: float, ci_low: float | None = None) -> Verdict:
    """Compare ``ratio`` with ``bound``; ``ci_low``, the lower end of the ratio's interval, if it has one.

    A ratio whose interval lies wholly above the bound misses it; so does one above the bound whose
    interval still reaches it (``overlaps``; a ratio without an interval never overlaps). Both are
    compared as the tables print them, to ``RATIO_DIGITS`` decimals, so that a reader checking a
    mark against the printed numbers comes to the same verdict (a ratio printed 1.020 meets <= 1.02).
    """
    above = ci_low is not None and round(ci_low, RATIO_DIGITS) > bound
    misses = round(ratio, RATIO_DIGITS) > bound or above
    return Verdict(bound, misses, misses and ci_low is not None and not above)


def row_verdict(row: Row, bound: float) -> Verdict:
    """A row's CPU ratio and its bootstrap interval against ``bound``."""
    return check_target(bound, row.ratio_cpu, row.ci_low)


# ------------------------------------------------------------------------------------------------
# Output


def format_table(measurement: Measurement, targets: Mapping[str, float | str | None] | None = None,
                 target: float | str | None = None) -> str:
    """A markdown table: variant, [against], CPU ms, ratio CPU [95% CI], wall ms, ratio wall, [NFE], [target].

    ``target`` (an upper bound on the CPU ratio, e.g. 1.05) applies to every row compared with a
    baseline, ``targets`` to single rows (see ``resolve_targets``). A row whose ratio is above its
    target is marked in the target column: ``**MISSES**`` when the whole 95% interval lies above
    it, ``**MISSES** (CI overlaps)`` when the median ratio does but the interval still reaches it.
    """
    rows = measurement.rows
    bounds = resolve_targets(measurement, target, targets)
    show_against = any(r.against != measurement.baseline for r in rows)
    show_nfe = any(r.nfe_text for r in rows)
    show_target = bool(bounds)
    head = ["variant"] + (["against"] if show_against else []) + ["CPU ms", "ratio CPU [95% CI]", "wall ms",
                                                                 "ratio wall"]
    head += (["NFE"] if show_nfe else []) + (["target"] if show_target else [])
    align = ["---"] + (["---"] if show_against else []) + ["---:", "---", "---:", "---:"]
    align += (["---:"] if show_nfe else []) + (["---"] if show_target else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for r in rows:
        cells = [r.name] + ([r.against] if show_against else [])
        cells += [f"{r.cpu_s * 1e3:.3f}" if r.cpu_s < 0.01 else f"{r.cpu_s * 1e3:.2f}",
                  "1 (baseline)" if r.name == r.against else f"{r.ratio_cpu:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
                  f"{r.wall_s * 1e3:.3f}" if r.wall_s < 0.01 else f"{r.wall_s * 1e3:.2f}", f"{r.ratio_wall:.3f}"]
        cell = row_verdict(r, bounds[r.name]).cell if r.name in bounds else ""
        cells += ([r.nfe_text] if show_nfe else []) + ([cell] if show_target else [])
        lines.append("| " + " | ".join(cells) + " |")
    if any(not r.nfe_matches for r in rows):
        lines.append("")
        lines.append("(!) NFE differs from its baseline in some rounds: that ratio includes a different amount "
                     "of work.")
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """Versions and machine facts a reader needs to compare tables."""
    import torchdiffeq
    import torchsde

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"torch": torch.__version__, "torchdiffeq": torchdiffeq.__version__, "torchsde": torchsde.__version__,
            "python": platform.python_version(), "threads": str(torch.get_num_threads()), "cpu": cpu,
            "cores": str(os.cpu_count())}


def command_line() -> str:
    """The command that produced this output, as a reader would type it."""
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "?"
    return " ".join(["python", shlex.quote(script), *(shlex.quote(a) for a in sys.argv[1:])])


class Report:
    """Prints the header once and each table as it is measured; ``finish`` writes ``--json`` if asked.

    ``timed=False`` leaves out the line on clocks and ratios, for scripts that do not use ``measure``;
    they store what they found with ``record``.
    """

    def __init__(self, args: argparse.Namespace, what: str, timed: bool = True) -> None:
        self.path: Path | None = getattr(args, "json", None)
        self.env = environment()
        self.command = command_line()
        self.tables: list[dict[str, Any]] = []
        self.records: dict[str, Any] = {}
        env = self.env
        print(f"{what}")
        print(f"torch {env['torch']}, torchdiffeq {env['torchdiffeq']}, torchsde {env['torchsde']}, "
              f"Python {env['python']}, {env['threads']} thread(s), {env['cpu']} ({env['cores']} cores)")
        print(f"command: {self.command}")
        if timed:
            print("clock: process CPU time (wall time beside it); ratio = median(variant) / median(its baseline), "
                  "95% paired bootstrap interval over rounds; the A/A row is the baseline timed again (noise floor)")
        sys.stdout.flush()

    def record(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-serializable, or shown by ``str``) for the ``--json`` file under ``key``."""
        self.records[key] = value

    def table(self, title: str, measurement: Measurement, targets: Mapping[str, float | str | None] | None = None,
              meta: Mapping[str, Any] | None = None, notes: Sequence[str] = (),
              target: float | str | None = None) -> None:
        """Print one table (see ``format_table`` for ``target`` and ``targets``) and keep it for ``--json``.

        In the JSON every row carries ``target`` (its upper bound, or null), ``misses_target`` (its
        ratio is above it) and ``misses_target_ci`` (the lower end of its 95% interval is).
        """
        bounds = resolve_targets(measurement, target, targets)
        print()
        print(f"{title}; {measurement.rounds} rounds in random order (seed {measurement.seed})")
        print()
        print(format_table(measurement, bounds))
        for note in notes:
            print(note)
        sys.stdout.flush()
        rows = []
        for r in measurement.rows:
            verdict = row_verdict(r, bounds[r.name]) if r.name in bounds else None
            misses = verdict is not None and verdict.misses
            rows.append({**asdict(r), "target": bounds.get(r.name), "misses_target": misses,
                         "misses_target_ci": misses and not verdict.overlaps})
        self.tables.append({
            "title": title, "meta": dict(meta or {}), "baseline": measurement.baseline,
            "rounds": measurement.rounds, "seed": measurement.seed, "targets": bounds,
            "notes": list(notes), "rows": rows, "cpu_s": measurement.cpu, "wall_s": measurement.wall,
        })

    def finish(self) -> None:
        if self.path is None:
            return
        document = {"environment": self.env, "command": self.command, "tables": self.tables, **self.records}
        self.path.write_text(json.dumps(document, indent=1, default=str))
        print(f"\nwrote {self.path}")


# ------------------------------------------------------------------------------------------------
# Memory measured in child processes

# glibc serves allocations above a threshold with mmap and returns them on free, but raises that
# threshold as large blocks are freed; after that, freed tensors stay in the heap, fragmented, and
# peak RSS drifts by several MiB from run to run. A fixed 128 KiB threshold keeps every sizable
# tensor mmapped, so peak RSS follows the live tensors (at batch 1024, dim 64, width 256 the spread
# of a training step's peak fell from about 5 MiB to 0.3 MiB). Other C libraries ignore the variable.
MMAP_THRESHOLD = 128 * 1024


def child_env(fixed_mmap: bool = True) -> dict[str, str]:
    """The environment of a memory-measuring child process (see ``MMAP_THRESHOLD``)."""
    env = dict(os.environ)
    if fixed_mmap:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    return env


def run_child(source: str, argv: Sequence[str], what: str, fixed_mmap: bool = True) -> dict:
    """Run ``source`` in a fresh interpreter with ``argv`` and return the JSON object its last line
    prints; a failing child stops the script with its last error line, naming ``what`` it measured.

    Linux carries ``ru_maxrss`` across exec: a child starts with its parent's peak. A child that
    measures growth with ``ru_maxrss`` is exact only while this process stays smaller than the
    child's level before its measurement (true for scripts that only import torch); after a large
    run in this process, read ``VmHWM`` from ``/proc/self/status`` instead."""
    out = subprocess.run([sys.executable, "-c", source, *argv], capture_output=True, text=True,
                         env=child_env(fixed_mmap))
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no error output"]
        sys.exit(f"{Path(sys.argv[0]).stem}: the process for {what} failed: {tail[0]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (process or sample counts)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return value


# ------------------------------------------------------------------------------------------------
# Workloads


class CountingMLP(torch.nn.Module):
    """An MLP vector field ``f(t, y)`` (tanh, ``hidden`` layers of ``width``) counting its evaluations."""

    def __init__(self, dim: int, width: int, hidden: int = 1) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = [torch.nn.Linear(dim, width), torch.nn.Tanh()]
        for _ in range(hidden - 1):
            layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, dim))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y)


#: The two ways a layer is timed: a training call (forward, a loss, backward) and an inference call.
BACKWARD = "forward+backward"
NO_GRAD = "no_grad forward"
MODES = (BACKWARD, NO_GRAD)


def call(field: CountingMLP, forward: Callable[[], torch.Tensor], mode: str) -> Variant:
    """A timed variant: ``forward()`` then, for ``BACKWARD``, ``square().mean().backward()``; returns the NFE.

    Gradients are dropped before each call so that every variant pays the same to write them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")

    if mode == BACKWARD:
        def run() -> int:
            field.nfe = 0
            field.zero_grad(set_to_none=True)
            forward().square().mean().backward()
            return field.nfe
    else:
        def run() -> int:
            field.nfe = 0
            with torch.no_grad():
                forward()
            return field.nfe
    return run
