"""Every plugin kind in one digits classifier at once: a registered tableau family under solver smoothing,
STEER end times, the error-estimate regularizer and a Neural SDE with the dropout diffusion.

Model: scikit-learn's 8x8 digits, the image is the state z(0) (64 values in [0, 1]). One vector field
f(t, z) = tanh(W2 tanh(W1 [z; t])) (100 hidden units, the digits task's) drives the state over [0, 1]
in two blocks that share it, then a linear head classifies z(1):

- [0, 0.5], an ``ODEBlock``: solved adaptively (rtol = atol = 1e-4) with ``rk2_euler``, a tableau
  family this script registers as a plugin: the meta-solver's rk2(u) with an embedded Euler step,
  a 2(1) pair for every u (u = 1 is ``heun_euler``). Base member u0 = 0.5 (seed 001's midpoint);
  solver smoothing draws u ~ Normal(0.5, 0.0125) every training call (seed 001); STEER draws the end
  T ~ U(0.25, 0.75) (seed 003); the error-estimate regularizer, weight 0.1, penalizes the pair's own
  error estimates (seed 004).
- [0.5, 1], an ``SDEBlock``: dh = f dt + sqrt((1 - p) / p) f dB, the dropout diffusion with p = 0.9
  (seed 000), Euler-Maruyama with dt = 0.1; STEER draws T ~ U(0.75, 1.25); the same error-estimate
  regularizer (here the drift's trapezoid defect, measured against the same tolerances).

Why two blocks and not one: an ``SDEBlock`` solves with torchsde's own methods, so it takes no tableau
family and refuses solver smoothing; and the error estimate that cuts NFE is the adaptive ODE
solver's. Sharing f keeps the parameters those of the plain Neural ODE.

Three variants, paired by seed (same initial weights and batch order): the plain Neural ODE of the
digits task (dopri5 at rtol = atol = 1.4e-8 on [0, 1], ``nde_plugins.experiments.digits``), the
two-block model with every plugin off (u fixed at 0.5, no STEER, no regularizer, no noise), and the
two-block model with all of them on. Evaluation integrates to the nominal ends with the base member
and without noise. Printed: mean +- std over seeds of train / test accuracy, training time,
prediction time and prediction NFE (field evaluations of one solve over the 360 test images; for the
SDE half they include torchsde's one probe evaluation); ``--plot`` draws them as bars.

    python examples/compose_all.py [--seeds 3] [--epochs 15] [--plot PATH | --no-plot] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

import nde_plugins as nde
from nde_plugins.experiments.compare import format_table, mean_std
from nde_plugins.experiments.digits import TimeConcatField, TrainConfig, TrainResult, load_digits_split, train_digits
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path

FAMILY = "rk2_euler"
#: The ODE half's tolerances (also the scale of the SDE half's error estimate).
TOL = 1e-4
SPLIT = 0.5  # the ODE block solves [0, SPLIT], the SDE block [SPLIT, 1]
STEER_B = 0.25  # half of each block's interval, as seed 003's b = 0.5 on [0, 1]
ERROR_WEIGHT = 0.1  # seed 004's default weight
DROPOUT_P = 0.9
SDE_DT = 0.1
#: The SDE block draws its Brownian paths (and end times) from a stream of its own.
NOISE_STREAM = 0x5EED_0000
DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "compose_all.png"

BASELINE = "Neural ODE (dopri5)"
PLUGINS_OFF = f"{FAMILY} ODE + SDE, plugins off"
ALL_ON = f"{FAMILY} ODE + SDE, all plugins"


def _pair_member(u: float) -> nde.Tableau:
    """The rk2(u) member with Euler (b_hat = (1, 0)) as its embedded method."""
    member = nde.get_tableau("rk2", u=u)
    return nde.Tableau(FAMILY, c=member.c, a=member.a, b=member.b, b_hat=[1.0, 0.0], order=2, embedded_order=1,
                       description="rk2(u) with an embedded Euler step, 2(1)")


class PairFamilyPlugin:
    """A plugin that registers ``rk2_euler``: the built-in rk2 family's domain and clamp, plus an error estimate."""

    @staticmethod
    @nde.hookimpl
    def register_tableaux(register):
        rk2 = nde.get_registry().get("tableau", "rk2")
        register(nde.TableauFamily(FAMILY, ("u",), {"u": 0.5}, _pair_member, rk2.domain,
                                   "rk2(u) with an embedded Euler step: a 2(1) pair for every u", clamp=rk2.clamp))


def register_family() -> None:
    """Register the pair family once per process (a second call finds it registered)."""
    if nde.get_registry().find("tableau", FAMILY) is None:
        nde.register_plugin(PairFamilyPlugin, "compose_all_tableaux")


class TwoBlockClassifier(torch.nn.Module):
    """head(SDE block(ODE block(x))), the two blocks sharing one field."""

    def __init__(self, plugins: bool, seed: int, hidden: int = 100) -> None:
        super().__init__()
        # Built in the order of the digits task's model (field, then head): the same seed gives the
        # same initial weights as the plain Neural ODE.
        field = TimeConcatField(64, hidden)
        # Each block's plugin arguments; empty with plugins off (solved with the base member, no noise).
        steer = {"end_time": "steer", "end_time_options": {"b": STEER_B}}
        error = {"regularizers": {"error_estimate": ERROR_WEIGHT}}
        ode_on = {**steer, **error, "schedule": "smoothing"} if plugins else {}
        sde_on = {**steer, **error, "diffusion": "dropout", "diffusion_options": {"p": DROPOUT_P}} if plugins else {}
        self.ode = nde.ODEBlock(field, t=(0.0, SPLIT), method=FAMILY, options={"u": 0.5}, rtol=TOL, atol=TOL,
                                seed=seed, **ode_on)
        self.sde = nde.SDEBlock(field, t=(SPLIT, 1.0), dt=SDE_DT, rtol=TOL, atol=TOL, seed=seed ^ NOISE_STREAM,
                                **sde_on)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.sde(self.ode(x)))

    def set_epoch(self, epoch: int) -> None:
        self.ode.epoch = self.sde.epoch = epoch

    def regularization(self) -> torch.Tensor:
        return self.ode.regularization() + self.sde.regularization()

    def nfe(self) -> int:
        """Field evaluations of the last call, both blocks (the SDE's drift evaluations are the field's)."""
        return self.ode.stats.nfe_forward + self.sde.stats.nfe_forward


def train_two_block(config: TrainConfig, plugins: bool) -> TrainResult:
    """Train the two-block model as ``fit_digits`` trains the plain one (Adam, same batches); its report."""
    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(config.seed)
    model = TwoBlockClassifier(plugins, config.seed, config.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        model.set_epoch(epoch)
        order = torch.randperm(len(x_train), generator=generator)
        nfe, batches = 0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx]) + model.regularization()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            nfe, batches = nfe + model.nfe(), batches + 1
        history.append({"epoch": epoch, "mean_nfe": nfe / batches})
    train_time = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(x_test)
        predict_time = time.perf_counter() - start
        nfe_predict = model.nfe()
        train_accuracy = (model(x_train).argmax(1) == y_train).float().mean().item() * 100
    return TrainResult(
        config={"seed": config.seed, "epochs": config.epochs, "plugins": plugins, "method": FAMILY, "tol": TOL},
        train_accuracy=train_accuracy,
        test_accuracy=(logits.argmax(1) == y_test).float().mean().item() * 100,
        nfe_predict=nfe_predict,
        train_time_s=train_time,
        predict_time_s=predict_time,
        history=history,
    )


VARIANTS: dict[str, Callable[[TrainConfig], TrainResult]] = {
    BASELINE: lambda config: train_digits(config, progress=False),
    PLUGINS_OFF: lambda config: train_two_block(config, plugins=False),
    ALL_ON: lambda config: train_two_block(config, plugins=True),
}


def run(seeds: list[int], epochs: int, runs: dict[str, Callable[[TrainConfig], TrainResult]] = VARIANTS,
        ) -> dict[str, list[TrainResult]]:
    """Every variant with every seed, interleaved by seed (machine load drifts alike for all)."""
    results: dict[str, list[TrainResult]] = {name: [] for name in runs}
    for seed in seeds:
        base = replace(TrainConfig(epochs=epochs), seed=seed)
        for name, train in runs.items():
            results[name].append(train(base))
    return results


# ------------------------------------------------------------------------------------------- plot


#: The figure's panels: (title, TrainResult attribute, format of the mean written on each bar).
PANELS = (("test accuracy %", "test_accuracy", "{:.2f}"), ("prediction NFE", "nfe_predict", "{:.1f}"),
           ("training time s", "train_time_s", "{:.1f}"))


def plot(results: dict[str, list[TrainResult]], path: Path, title: str) -> None:
    """Bars of the PANELS per variant (mean, one std as error bars, each seed as a dot)."""
    from nde_plugins.plots import plot_comparison

    path.parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(results, PANELS, str(path), title, zoom=("test_accuracy",))


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=at_least_one, default=15, help="epochs of Adam (default 15)")
    add_figure_options(parser, DEFAULT_PLOT, "smoke run in seconds: 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    register_family()
    seeds, epochs = ([0], 1) if args.quick else (list(range(args.seeds)), args.epochs)
    start = time.perf_counter()
    results = run(seeds, epochs)
    wall = time.perf_counter() - start

    baseline = TrainConfig()
    header = (f"torch {torch.__version__}; digits (fixed 80/20 split), "
              f"{epochs} epoch(s), Adam {baseline.lr:g}, batch {baseline.batch_size}, seeds {seeds[0]}..{seeds[-1]} "
              f"(paired), one thread, {wall:.0f} s wall")
    print(header)
    print(f"  {BASELINE}: rtol=atol={baseline.rtol:g} on [0, 1]")
    print(f"  {FAMILY} ODE + SDE: ODE on [0, {SPLIT:g}] with {FAMILY} u0=0.5 at rtol=atol={TOL:g}, then SDE on "
          f"[{SPLIT:g}, 1] with Euler-Maruyama dt={SDE_DT:g}, one shared field")
    print(f"  all plugins: smoothing u ~ N(0.5, 0.0125); STEER b={STEER_B:g} on both blocks; error_estimate "
          f"{ERROR_WEIGHT:g} on both blocks; dropout diffusion p={DROPOUT_P:g}")
    print()
    print(format_table(results))
    print()
    print("mean training NFE per batch in the last epoch: " + "; ".join(
        f"{name} {mean_std([r.history[-1]['mean_nfe'] for r in runs], '{:.1f}')}" for name, runs in results.items()))
    if path is not None:
        plot(results, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
