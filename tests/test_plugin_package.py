"""The sample plugin package in examples/plugin_package: discovered through its entry points, and each
of its plugins acts in a solve or a training step. Every check runs in a fresh interpreter, as a
user's program would, with the package installed (requirements-test.txt installs it); a missing
package fails rather than skips, since the docs' plugin pages are built from it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "examples" / "plugin_package"
DISTRIBUTION = "nde-plugins-sample-pack"
CONTRIBUTES = {
    "ralston3": "tableau",
    "rk2_pair": "tableau",
    "fading": "diffusion",
    "steer_below": "end_time_sampler",
    "error_peak": "step_regularizer",
    "cyclic": "solver_schedule",
}


def run(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=180, cwd=ROOT, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module", autouse=True)
def installed():
    """The package must be installed from this checkout (editable), so the tests see its current files."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(DISTRIBUTION)
    except PackageNotFoundError:
        pytest.fail(f"{DISTRIBUTION} is not installed; run `pip install -e examples/plugin_package` "
                    "(requirements-test.txt does)")
    spec = importlib.util.find_spec("nde_sample_pack")
    location = Path(spec.origin) if spec is not None and spec.origin else None
    assert location is not None and location.is_relative_to(PACKAGE), (
        f"nde_sample_pack is imported from {location}, not from {PACKAGE}; reinstall it with "
        "`pip install -e examples/plugin_package`"
    )


def test_every_plugin_is_discovered_with_its_source():
    out = subprocess.run([sys.executable, "-m", "nde_plugins.cli", "plugins", "--json"], capture_output=True,
                         text=True, timeout=180, check=True).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    for name, kind in CONTRIBUTES.items():
        assert name in rows, f"{name} was not registered; load errors: {[r for r in rows.values() if 'error' in r]}"
        assert rows[name]["kind"] == kind and rows[name]["source"] == DISTRIBUTION, rows[name]
    assert not [row for row in rows.values() if row["kind"] == "load_error"]


def test_disabling_entry_points_leaves_the_package_out():
    out = run("""
        import nde_plugins as nde
        names = {n for kind in nde.KINDS for n in nde.get_registry().names(kind)}
        print(sorted(names & {"ralston3", "rk2_pair", "fading", "steer_below", "error_peak", "cyclic"}))
    """, NDE_PLUGINS_DISABLE_ENTRY_POINTS="1")
    assert out.strip() == "[]"


# One interpreter measures what every plugin does; the tests below read its numbers.
BEHAVIOUR = """
import json, math
import torch, torchdiffeq
import nde_plugins as nde

torch.manual_seed(0)
out = {}
f64 = torch.float64
decay = lambda t, y: -y
y0, span = torch.ones(1, dtype=f64), torch.tensor([0.0, 1.0], dtype=f64)
exact = math.exp(-1.0)

# ralston3 in plain torchdiffeq: third order, so halving the step divides the error by about 8.
errors = [abs(torchdiffeq.odeint(decay, y0, span, method="ralston3", options={"step_size": h})[-1].item() - exact)
          for h in (0.1, 0.05)]
out["ralston3_ratio"] = errors[0] / errors[1]

# rk2_pair: adaptive (its embedded Euler step gives E_j), accurate, and every member is second order.
y, stats = nde.odeint(decay, y0, span, method="rk2_pair", options={"u": 0.5}, rtol=1e-7, atol=1e-9,
                      return_stats=True)
out["pair_error"] = abs(y[-1].item() - exact)
out["pair_error_ratios"] = stats.error_ratios().numel()
out["pair_mode"] = stats.plan.mode
errors = [abs(torchdiffeq.odeint(decay, y0, span, method="rk2_pair", options={"u": 1.0, "step_size": h})[-1].item()
              - exact) for h in (0.1, 0.05)]
out["pair_ratio"] = errors[0] / errors[1]

# An ODEBlock with the package's tableau family, schedule, end-time sampler and regularizer at once.
field = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
block = nde.ODEBlock(lambda t, z: field(z), t=(0.0, 1.0), method="rk2_pair", rtol=1e-4, atol=1e-4,
                     schedule="cyclic", schedule_options={"members": [{"u": 0.5}, {"u": 1.0}, "heun_euler"]},
                     end_time="steer_below", end_time_options={"b": 0.4}, regularizers={"error_peak": 1.0}, seed=0)
x = torch.randn(8, 3)
methods, ends, peaks, maxima = [], [], [], []
for _ in range(4):
    field.zero_grad()
    block(x)
    penalty = block.regularization()
    penalty.backward()
    methods.append([block.last_method[0], block.last_method[1]])
    ends.append(float(block.last_t[-1]))
    peaks.append(penalty.item())
    maxima.append(block.stats.error_ratios().max().item())
out["methods"], out["ends"], out["peaks"], out["maxima"] = methods, ends, peaks, maxima
out["penalty_grad"] = sum(p.grad.abs().sum().item() for p in field.parameters())
block.eval()
block(x)
out["eval_method"] = [block.last_method[0], block.last_method[1]]
out["eval_end"] = float(block.last_t[-1])

# Per-sample draws of steer_below stay in [t1 - b, t1].
per_sample = nde.ODEBlock(lambda t, z: field(z), t=(0.0, 1.0), method="dopri5", rtol=1e-4, atol=1e-4,
                          end_time="steer_below", end_time_options={"b": 0.4, "per_sample": True}, seed=1)
per_sample(torch.randn(64, 3))
out["per_sample_ends"] = per_sample.last_t[:, -1].tolist()

# fading in an SDEBlock with zero drift: h(1) = int_0^1 sigma exp(-rate t) dB, whose variance under
# Euler-Maruyama is the left-point sum of sigma^2 exp(-2 rate t_k) dt.
zero = lambda t, h: torch.zeros_like(h)
variances = {}
for rate in (0.0, 2.0):
    sde = nde.SDEBlock(zero, diffusion="fading", diffusion_options={"sigma": 0.5, "rate": rate}, dt=0.05, seed=0)
    variances[str(rate)] = sde(torch.zeros(4000, 1)).var().item()
out["variances"] = variances
out["expected"] = {str(rate): sum(0.25 * math.exp(-2 * rate * 0.05 * k) * 0.05 for k in range(20))
                   for rate in (0.0, 2.0)}

# What the plugins refuse, when a block is built.
refusals = {}
for label, build in {
    "cyclic_params_without_family": lambda: nde.ODEBlock(zero, method="dopri5", schedule="cyclic",
                                                         schedule_options={"members": [{"u": 0.5}]}),
    "cyclic_member_without_pair": lambda: nde.ODEBlock(zero, method="rk2_pair", regularizers={"error_peak": 1.0},
                                                       schedule="cyclic",
                                                       schedule_options={"members": ["rk4_classic"]}),
    "steer_below_too_wide": lambda: nde.ODEBlock(zero, t=(0.0, 1.0), end_time="steer_below",
                                                 end_time_options={"b": 1.5}),
    "error_peak_without_pair": lambda: nde.ODEBlock(zero, method="ralston3", regularizers={"error_peak": 1.0}),
    "rk2_pair_outside_domain": lambda: nde.get_tableau("rk2_pair", u=1.5),
    "fading_negative_sigma": lambda: nde.SDEBlock(zero, diffusion="fading", diffusion_options={"sigma": -1.0}),
}.items():
    try:
        build()
        refusals[label] = None
    except (ValueError, TypeError) as exc:
        refusals[label] = str(exc)
out["refusals"] = refusals
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def behaviour() -> dict:
    return json.loads(run(BEHAVIOUR).strip().splitlines()[-1])


def test_the_tableau_is_third_order_in_plain_torchdiffeq(behaviour):
    assert 7.0 < behaviour["ralston3_ratio"] < 9.0


def test_the_family_runs_adaptively_with_error_estimates(behaviour):
    assert behaviour["pair_mode"] == "adaptive" and behaviour["pair_error_ratios"] > 0
    assert behaviour["pair_error"] < 1e-5
    assert 3.5 < behaviour["pair_ratio"] < 4.5  # second order on a fixed grid


def test_the_schedule_cycles_through_its_members_and_evaluation_uses_the_base(behaviour):
    assert behaviour["methods"] == [["rk2_pair", {"u": 0.5}], ["rk2_pair", {"u": 1.0}], ["heun_euler", {}],
                                    ["rk2_pair", {"u": 0.5}]]
    assert behaviour["eval_method"][0] == "rk2_pair" and behaviour["eval_method"][1]["u"] == pytest.approx(2 / 3)


def test_the_end_time_sampler_draws_below_t1_in_training_only(behaviour):
    ends = behaviour["ends"] + behaviour["per_sample_ends"]
    assert all(0.6 <= end <= 1.0 for end in ends), ends
    assert len(set(behaviour["ends"])) == len(behaviour["ends"])  # a fresh draw every call
    assert len(set(behaviour["per_sample_ends"])) == 64
    assert behaviour["eval_end"] == 1.0


def test_the_regularizer_is_the_largest_error_ratio_and_has_a_gradient(behaviour):
    assert behaviour["peaks"] == pytest.approx(behaviour["maxima"], rel=1e-6)
    assert all(p > 0 for p in behaviour["peaks"]) and behaviour["penalty_grad"] > 0


def test_the_diffusion_fades_in_time(behaviour):
    variances, expected = behaviour["variances"], behaviour["expected"]
    for rate in ("0.0", "2.0"):  # 4000 samples: the variance is known to about 2%
        assert variances[rate] == pytest.approx(expected[rate], rel=0.1), (rate, variances, expected)
    assert variances["2.0"] < 0.6 * variances["0.0"]


@pytest.mark.parametrize("label, message", [
    ("cyclic_params_without_family", "not a family"),
    ("cyclic_member_without_pair", "error estimate"),
    ("steer_below_too_wide", "must be smaller than the last interval"),
    ("error_peak_without_pair", "error estimate"),
    ("rk2_pair_outside_domain", "0 < u <= 1"),
    ("fading_negative_sigma", "sigma must be a finite number >= 0"),
])
def test_bad_options_are_refused_when_a_block_is_built(behaviour, label, message):
    refusal = behaviour["refusals"][label]
    assert refusal is not None, f"{label} was accepted"
    assert message in refusal, refusal
