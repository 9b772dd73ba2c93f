"""The benchmark harness's own logic (benchmarks/_common.py): sizes, random order, bootstrap, tables.

No solver runs here: the timed variants are plain Python callables.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_common.py"
_spec = importlib.util.spec_from_file_location("benchmarks_common", _PATH)
common = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = common  # dataclasses look their module up while the class is built
_spec.loader.exec_module(common)


# ------------------------------------------------------------------------------------------------
# --sizes and the shared options


def test_parse_size_reads_batch_dim_width():
    assert common.parse_size("256,16,64") == common.Size(256, 16, 64)
    assert common.parse_size("1,2,16").spec == "1,2,16"
    assert common.parse_size("1, 2, 16") == common.Size(1, 2, 16)  # a quoted list with spaces reads the same


@pytest.mark.parametrize("text", ["1,2", "1,2,3,4", "a,b,c", "0,2,16", "1,-2,16", "1.5,2,16", "", "1,,16"])
def test_parse_size_refuses_anything_but_three_positive_integers(text):
    with pytest.raises(argparse.ArgumentTypeError, match="three positive integers batch,dim,width"):
        common.parse_size(text)


def test_default_sweep_is_the_issue_sizes():
    args = common.make_parser("doc").parse_args([])
    assert [s.spec for s in args.sizes] == ["1,2,16", "16,8,32", "256,16,64", "1024,64,256"]
    args = common.make_parser("doc").parse_args(["--sizes", "16,8,32", "1024,64,256"])
    assert args.sizes == [common.Size(16, 8, 32), common.Size(1024, 64, 256)]


def test_bad_sizes_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        common.make_parser("doc").parse_args(["--sizes", "1,2"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--sizes" in errors[0] and "batch,dim,width" in errors[0]


def test_json_path_needs_an_existing_folder(tmp_path):
    assert common.json_path(str(tmp_path / "out.json")) == tmp_path / "out.json"
    with pytest.raises(argparse.ArgumentTypeError, match="does not exist"):
        common.json_path(str(tmp_path / "missing" / "out.json"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        common.json_path(str(tmp_path))


def test_quick_shrinks_the_budget_and_the_rounds():
    quick = common.Timing.from_args(common.make_parser("doc").parse_args(["--quick"]))
    full = common.Timing.from_args(common.make_parser("doc").parse_args([]))
    assert quick.budget_s < full.budget_s and quick.max_rounds < full.max_rounds and quick.warmup < full.warmup
    fixed = common.Timing.from_args(common.make_parser("doc").parse_args(["--rounds", "9", "--quick"]))
    assert fixed.rounds_for(100.0) == 9 == fixed.rounds_for(1e-6)


def test_rounds_adapt_to_the_round_time_within_bounds():
    timing = common.Timing(budget_s=10.0, min_rounds=7, max_rounds=400)
    assert timing.rounds_for(0.1) == 100
    assert timing.rounds_for(1e-5) == 400  # tiny solves: capped
    assert timing.rounds_for(5.0) == 7  # batch 1024: never fewer than min_rounds


@pytest.mark.parametrize("kwargs, match", [
    ({"rounds": 1}, "rounds must be at least 2"),
    ({"budget_s": 0.0}, "budget_s must be a positive"),
    ({"min_rounds": 10, "max_rounds": 5}, "min_rounds <= max_rounds"),
    ({"warmup": 0}, "warmup must be at least 1"),
])
def test_timing_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        common.Timing(**kwargs)


# ------------------------------------------------------------------------------------------------
# Random order


def test_random_orders_are_fresh_seeded_permutations():
    names = ["a", "b", "c", "d"]
    orders = common.random_orders(names, 400, seed=3)
    assert all(sorted(order) == names for order in orders)
    assert orders == common.random_orders(names, 400, seed=3)
    assert orders != common.random_orders(names, 400, seed=4)
    assert len({tuple(o) for o in orders}) == 24  # every permutation of four turns up in 400 rounds
    firsts = Counter(order[0] for order in orders)
    assert min(firsts.values()) > 70  # each name leads about a quarter of the rounds, none always


def test_random_orders_leave_the_given_names_alone():
    names = ["x", "y", "z"]
    common.random_orders(names, 5, seed=0)
    assert names == ["x", "y", "z"]


# ------------------------------------------------------------------------------------------------
# Bootstrap interval


def test_bootstrap_of_an_exact_ratio_is_that_ratio():
    base = [1.0, 3.0, 2.0, 5.0, 4.0]
    low, high = common.bootstrap_ratio([2 * b for b in base], base, resamples=500)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)


def test_bootstrap_pairs_rounds():
    # The machine's speed swings 10x between rounds, the variant is always 10% slower than the
    # baseline of its own round: paired resampling sees the 10%, unpaired would see mostly the swing.
    base = [1.0 + 9.0 * ((7 * i) % 11) / 10 for i in range(60)]
    values = [1.1 * b * (1 + 0.01 * ((-1) ** i)) for i, b in enumerate(base)]
    low, high = common.bootstrap_ratio(values, base, resamples=1000, seed=1)
    assert 1.05 < low <= 1.1 <= high < 1.15


def test_bootstrap_interval_covers_one_for_the_same_distribution_and_is_reproducible():
    base = [1.0 + ((13 * i) % 17) / 40 for i in range(80)]
    other = [1.0 + ((13 * i + 5) % 17) / 40 for i in range(80)]
    low, high = common.bootstrap_ratio(other, base, resamples=1000, seed=0)
    assert low < 1.0 < high
    assert (low, high) == common.bootstrap_ratio(other, base, resamples=1000, seed=0)


def test_bootstrap_median_of_even_counts_is_the_middle_mean():
    import torch

    assert float(common._medians(torch.tensor([[4.0, 1.0, 3.0, 2.0]], dtype=torch.float64))[0]) == 2.5


@pytest.mark.parametrize("values, base, kwargs, match", [
    ([1.0, 2.0], [1.0], {}, "pair round by round"),
    ([1.0], [1.0], {}, "at least 2 rounds"),
    ([1.0, 2.0], [1.0, 2.0], {"level": 1.0}, "level must lie in"),
    ([1.0, 2.0], [1.0, 2.0], {"resamples": 3}, "resamples must be at least 10"),
])
def test_bootstrap_refuses_bad_input(values, base, kwargs, match):
    with pytest.raises(ValueError, match=match):
        common.bootstrap_ratio(values, base, **kwargs)


# ------------------------------------------------------------------------------------------------
# summarize, measure, the table


def test_summarize_compares_each_variant_with_its_own_baseline():
    cpu = {"A": [1.0, 1.0, 1.0], "B": [2.0, 2.0, 2.0], "C": [3.0, 3.0, 3.0], "D": [6.0, 6.0, 6.0]}
    nfe = {"A": [5, 5, 5], "B": [5, 5, 6], "C": [None] * 3, "D": [None] * 3}
    rows = common.summarize(cpu, cpu, nfe, {"A": "A", "B": "A", "C": "C", "D": "C"}, resamples=50)
    by_name = {r.name: r for r in rows}
    assert by_name["A"].ratio_cpu == 1.0 and by_name["B"].ratio_cpu == 2.0 and by_name["D"].ratio_cpu == 2.0
    assert by_name["B"].ratio_wall == 2.0
    assert not by_name["B"].nfe_matches and by_name["B"].nfe_text == "5-6 (!)"
    assert by_name["A"].nfe_text == "5" and by_name["D"].nfe_text == ""


def test_measure_adds_the_control_and_times_every_variant_every_round():
    calls = Counter()
    rounds_started = []

    def variant(name, nfe):
        def run():
            calls[name] += 1
            return nfe
        return run

    timing = common.Timing(rounds=6, warmup=2, resamples=50)
    result = common.measure({"base": variant("base", 10), "x": variant("x", 10), "y": variant("y", None)}, "base",
                            timing, before_round=lambda: rounds_started.append(1))
    assert [r.name for r in result.rows] == ["base", "base (A/A)", "x", "y"]
    assert result.rounds == 6 and len(rounds_started) == 8  # warm-up passes and rounds
    assert calls == {"base": 16, "x": 8, "y": 8}  # the control is the baseline's callable timed again
    assert all(len(v) == 6 for v in result.cpu.values()) and all(len(v) == 6 for v in result.wall.values())
    assert result.row("x").nfe_text == "10" and result.row("y").nfe_text == ""
    assert result.row("base (A/A)").against == "base"
    assert gc.isenabled()


def test_measure_adapts_the_rounds_to_the_budget():
    timing = common.Timing(budget_s=0.05, min_rounds=3, max_rounds=12, warmup=1, resamples=50)
    result = common.measure({"fast": lambda: None}, "fast", timing)
    assert result.rounds == 12  # a no-op round is far below the budget: capped
    slow = common.Timing(budget_s=0.001, min_rounds=3, max_rounds=12, warmup=1, resamples=50)
    result = common.measure({"sleepy": lambda: sum(range(20000))}, "sleepy", slow)
    assert result.rounds == 3


def test_measure_refuses_unknown_names():
    with pytest.raises(ValueError, match="baseline 'z' is not among"):
        common.measure({"a": lambda: None}, "z")
    with pytest.raises(ValueError, match="both must be variants"):
        common.measure({"a": lambda: None, "b": lambda: None}, "a", against={"b": "c"})
    with pytest.raises(ValueError, match="name of the A/A control"):
        common.measure({"a": lambda: None, "a (A/A)": lambda: None}, "a")


def test_table_columns_and_marks():
    cpu = {"base": [0.002, 0.002], "base (A/A)": [0.002, 0.002], "ours": [0.003, 0.003]}
    rows = common.summarize(cpu, cpu, {"base": [4, 4], "base (A/A)": [4, 4], "ours": [4, 5]},
                            {"base": "base", "base (A/A)": "base", "ours": "base"}, resamples=20)
    text = common.format_table(common.Measurement(rows, "base", 2, 0, cpu, cpu), {"ours": "<= 1.05"})
    lines = text.splitlines()
    assert lines[0] == "| variant | CPU ms | ratio CPU [95% CI] | wall ms | ratio wall | NFE | target |"
    assert "| base | 2.000 | 1 (baseline) |" in lines[2]
    assert lines[4] == "| ours | 3.000 | 1.500 [1.500, 1.500] | 3.000 | 1.500 | 4-5 (!) | <= 1.05 **MISSES** |"
    assert "NFE differs" in lines[-1]
    assert "against" not in lines[0]


# ------------------------------------------------------------------------------------------------
# Targets


def _rows(ratios):
    """A table from synthetic rows: name -> (ratio, ci_low, ci_high), all against "base"."""
    base = common.Row("base", "base", 0.002, 0.002, 1.0, 1.0, 1.0, 1.0, [None], True)
    rows = [base] + [common.Row(name, "base", 0.002 * r, 0.002 * r, r, lo, hi, r, [None], True)
                     for name, (r, lo, hi) in ratios.items()]
    return common.Measurement(rows, "base", 7, 0, {}, {})


def _target_cells(text):
    cells = [[c.strip() for c in line[1:-1].split("|")] for line in text.splitlines()[2:] if line.startswith("| ")]
    return {row[0]: row[-1] for row in cells}


def test_a_ratio_above_its_target_is_marked_by_how_clearly():
    table = _rows({"base (A/A)": (1.004, 0.99, 1.01), "clear": (1.057, 1.049, 1.063),
                   "overlapping": (1.032, 1.027, 1.036), "meets": (1.027, 1.023, 1.031),
                   "at the bound": (1.030, 1.020, 1.040), "faster": (0.93, 0.92, 0.95)})
    text = common.format_table(table, target=1.03)
    assert text.splitlines()[0].endswith("| ratio wall | target |")
    assert _target_cells(text) == {
        "base": "", "base (A/A)": "",  # a baseline and its control have no target
        "clear": "<= 1.03 **MISSES**", "overlapping": "<= 1.03 **MISSES** (CI overlaps)",
        "meets": "<= 1.03", "at the bound": "<= 1.03", "faster": "<= 1.03",
    }


def test_a_miss_is_judged_on_the_printed_ratio():
    # 1.0204 prints as 1.020, which a reader checks against <= 1.02 as met.
    assert not common.check_target(1.02, 1.0204, 1.01).misses
    assert common.check_target(1.02, 1.0206, 1.01) == common.Verdict(1.02, True, True)
    assert common.check_target(1.02, 1.0206, 1.0206) == common.Verdict(1.02, True, False)
    # No interval (a memory ratio): a ratio above the bound is a plain miss.
    assert common.check_target(1.02, 1.05).mark == "**MISSES**"
    assert common.check_target(1.02, 1.01).cell == "<= 1.02"


def test_row_targets_override_the_table_target():
    table = _rows({"a": (1.04, 1.035, 1.045), "b": (1.04, 1.035, 1.045), "c": (1.04, 1.035, 1.045)})
    cells = _target_cells(common.format_table(table, {"b": 1.05, "c": None}, target=1.02))
    assert cells == {"base": "", "a": "<= 1.02 **MISSES**", "b": "<= 1.05", "c": ""}
    # The text form of the docs reads as the number.
    assert common.resolve_targets(table, targets={"a": "<= 1.05", "b": 1.08}) == {"a": 1.05, "b": 1.08}


def test_no_target_no_column():
    table = _rows({"a": (1.5, 1.4, 1.6)})
    assert "target" not in common.format_table(table)
    assert "target" not in common.format_table(table, {"a": None})


@pytest.mark.parametrize("targets, target, match", [
    ({"typo": 1.05}, None, "target for 'typo': no such row"),
    ({"a": ">= 1.05"}, None, "upper bound on the ratio"),
    ({"a": "within 5%"}, None, "upper bound on the ratio"),
    ({"a": 0.0}, None, "positive finite"),
    ({"a": float("nan")}, None, "positive finite"),
    ({"a": True}, None, "positive finite"),
    (None, "fast", "upper bound on the ratio"),
])
def test_targets_refuse_what_is_not_an_upper_bound_of_a_row(targets, target, match):
    with pytest.raises(ValueError, match=match):
        common.format_table(_rows({"a": (1.0, 0.9, 1.1)}), targets, target=target)


def test_peak_memory_marks_a_miss_in_either_ratio(monkeypatch):
    # The memory table has no interval: a median ratio above the target is a plain miss.
    monkeypatch.syspath_prepend(str(_PATH.parent))
    spec = importlib.util.spec_from_file_location("benchmarks_peak_memory", _PATH.parent / "peak_memory.py")
    peak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peak)

    def samples(stats_second_step_kib):
        out = {name: [{"kib": [1024, 2048], "nfe": [20, 20]}] for name in peak.CONFIGS}
        out["ODEBlock, statistics on"] = [{"kib": [1024, stats_second_step_kib], "nfe": [20, 20]}]
        return out

    def stats_row(text):
        return next(line for line in text.splitlines() if line.startswith("| ODEBlock, statistics on |"))

    assert stats_row(peak.table(samples(2048))).endswith("| 1.000 | 20 | <= 1.02 |")
    assert stats_row(peak.table(samples(2150))).endswith("| 1.050 | 20 | <= 1.02 **MISSES** |")
    assert peak.verdicts(samples(2150)) == {"ODEBlock, statistics on": {
        "target": 1.02, "ratio_step1": 1.0, "ratio_steps12": 2150 / 2048, "misses_target": True}}


def test_gradient_memory_marks_the_peak_target_at_400_steps_and_the_time_target_everywhere(monkeypatch):
    monkeypatch.syspath_prepend(str(_PATH.parent))
    spec = importlib.util.spec_from_file_location("benchmarks_gradient_memory", _PATH.parent / "gradient_memory.py")
    gradients = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gradients)

    def run(kib, cpu_s, regularized=True):
        return [{"kib": kib, "cpu_s": cpu_s, "steps": 400, "nfe": 2400, "nfe_back": 0, "regularized": regularized}]

    samples = {400: {"backprop": run(1000, 1.0), "backprop (A/A)": run(1000, 1.0), "checkpoint": run(400, 1.7),
                     "adjoint": run(10, 2.0, regularized=False)}}
    text, verdicts = gradients.table(samples)
    row = next(line for line in text.splitlines() if "| checkpoint |" in line)
    assert "| 0.400 |" in row and "| 1.700 |" in row
    assert "time <= 1.6 **MISSES**" in row and "peak <= 0.35 **MISSES**" in row
    assert "adjoint, without the regularizer" in text
    assert verdicts["peak checkpoint N=400"]["misses_target"] and verdicts["time checkpoint N=400"]["misses_target"]
    samples[400]["checkpoint"] = run(300, 1.5)
    assert not any(v["misses_target"] for v in gradients.table(samples)[1].values())


def test_report_json_carries_each_rows_target_and_verdict(tmp_path, capsys):
    report = common.Report(argparse.Namespace(json=tmp_path / "r.json"), "what")
    table = _rows({"base (A/A)": (1.0, 0.99, 1.01), "slow": (1.06, 1.05, 1.07), "shaky": (1.03, 1.01, 1.05),
                   "ok": (1.0, 0.98, 1.02)})
    report.table("t", table, target=1.02)
    report.finish()
    data = json.loads((tmp_path / "r.json").read_text())["tables"][0]
    assert data["targets"] == {"slow": 1.02, "shaky": 1.02, "ok": 1.02}
    got = {r["name"]: (r["target"], r["misses_target"], r["misses_target_ci"]) for r in data["rows"]}
    assert got == {"base": (None, False, False), "base (A/A)": (None, False, False), "slow": (1.02, True, True),
                   "shaky": (1.02, True, False), "ok": (1.02, False, False)}
    out = capsys.readouterr().out
    assert "| slow |" in out and "<= 1.02 **MISSES** |" in out and "<= 1.02 **MISSES** (CI overlaps) |" in out


def test_report_writes_json(tmp_path, capsys):
    args = argparse.Namespace(json=tmp_path / "r.json")
    report = common.Report(args, "what")
    result = common.measure({"a": lambda: 3}, "a", common.Timing(rounds=3, warmup=1, resamples=20))
    report.table("a table", result, meta={"size": "1,2,16"})
    report.record("extra", {"k": 1})
    report.finish()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["tables"][0]["title"] == "a table" and data["tables"][0]["rounds"] == 3
    assert [r["name"] for r in data["tables"][0]["rows"]] == ["a", "a (A/A)"]
    assert len(data["tables"][0]["cpu_s"]["a"]) == 3 and data["extra"] == {"k": 1}
    assert "torch" in data["environment"]
    out = capsys.readouterr().out
    assert "what" in out and "A/A" in out
