"""Blocks under torch.distributed: two gloo processes on CPU train tiny models in DistributedDataParallel.

One launch runs every scenario (``_main`` below, in two subprocesses) and saves what each rank
saw; the tests compare that with single-process references computed here. A reference is either
a run on the global batch with the same seed (no draws, or only synchronized ones), or, for
per-rank draws, one process solving each rank's half with a block seeded by the per-rank rule
(``rank_seed``), the blocks sharing one set of parameters, the loss averaged as DDP averages the
gradients.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nde_plugins as nde
from nde_plugins.distributed import (
    RankCounts,
    all_ranks_mean,
    all_ranks_sum,
    all_reduce_counts,
    all_reduce_stats,
    rank_seed,
    step_counts,
)

WORLD = 2
SEED = 7
STEPS = 3
LOCAL = 8  # samples per rank; the global batch holds WORLD * LOCAL
LR = 0.2
FIXED = {"method": "rk4", "options": {"step_size": 0.25}}

# name -> (block kind, block options, seeded, reference). "global": equal to one process on the
# global batch; "per_rank": equal to one process solving each half with its rank's stream.
SCENARIOS = {
    "ode_regularizer": ("ode", {**FIXED, "regularizers": {"kinetic_energy": 0.1}}, False, "global"),
    "ode_adjoint": ("ode", {**FIXED, "adjoint": True}, False, "global"),
    "ode_adjoint_integral": ("ode", {**FIXED, "gradient": "adjoint", "regularizers": {"kinetic_energy": 0.1}}, False,
                             "global"),
    "ode_checkpoint": ("ode", {**FIXED, "gradient": "checkpoint", "regularizers": {"kinetic_energy": 0.1}}, False,
                       "global"),
    "ode_steer_synchronized": ("ode", {**FIXED, "end_time": "steer",
                                       "end_time_options": {"b": 0.5, "synchronized": True}}, True, "global"),
    "ode_steer_per_rank": ("ode", {**FIXED, "end_time": "steer", "end_time_options": {"b": 0.5},
                                   "regularizers": {"kinetic_energy": 0.1}}, True, "per_rank"),
    "ode_steer_per_sample": ("ode", {**FIXED, "end_time": "steer",
                                     "end_time_options": {"b": 0.5, "per_sample": True}}, True, "per_rank"),
    "ode_switching": ("ode", {**FIXED, "schedule": "switching",
                              "schedule_options": {"members": ["rk4", "midpoint"]}}, True, "per_rank"),
    "ode_switching_synchronized": ("ode", {**FIXED, "schedule": "switching", "schedule_options": {
        "members": ["rk4", "midpoint"], "synchronized": True}}, True, "global"),
    "ode_step_adaption": ("ode", {"method": "euler", "options": {"step_size": 0.25}, "schedule": "step_adaption",
                                  "schedule_options": {"k": 1}}, False, "global"),
    "sde_dropout": ("sde", {"diffusion": "dropout", "dt": 0.25, "regularizers": {"kinetic_energy": 0.1}}, True,
                    "per_rank"),
    "sde_learned_sigma_adjoint": ("sde", {"diffusion": "additive", "diffusion_options": {"sigma": 0.1,
                                          "learnable": True}, "dt": 0.25, "adjoint": True}, True, "per_rank"),
}


class _Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _Net(torch.nn.Module):
    def __init__(self, block: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.block, self.head = block, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


@contextlib.contextmanager
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(WORLD * LOCAL, 4, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 3, (WORLD * LOCAL,), generator=generator)


def _parts() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)  # the same initial parameters in every process
    return _Field(), torch.nn.Linear(4, 3)


def _block(kind: str, options: dict, field: torch.nn.Module, seed: int | None,
           diffusion: torch.nn.Module | None = None) -> torch.nn.Module:
    seeded = {} if seed is None else {"seed": seed}
    if kind == "ode":
        return nde.ODEBlock(field, t=(0.0, 1.0), **options, **seeded)
    options = {k: v for k, v in options.items() if k not in ("diffusion", "diffusion_options")}
    return nde.SDEBlock(field, diffusion, t=(0.0, 1.0), **options, **seeded)


def _diffusion(kind: str, options: dict, field: torch.nn.Module) -> torch.nn.Module | None:
    """The SDE's diffusion as a module, so that the per-rank references can share its parameters."""
    if kind != "sde":
        return None
    factory = nde.get_registry().get("diffusion", options["diffusion"])
    return factory(field, **options.get("diffusion_options", {}))


def _step(model, net: _Net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One training step's loss (with the block's regularization) and backward; adaption's update after it."""
    loss = torch.nn.functional.cross_entropy(model(x), y) + net.block.regularization()
    loss.backward()
    update = getattr(net.block.policy.schedule, "update", None)
    if update is not None:
        update(model, x, y)
    return loss


def _method(block) -> str:
    return block.last_method[0]


# ------------------------------------------------------------------------------------------------
# What each rank runs (in a subprocess)


def _train_rank(name: str, rank: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    kind, options, seeded, _ = SCENARIOS[name]
    field, head = _parts()
    net = _Net(_block(kind, options, field, SEED if seeded else None, _diffusion(kind, options, field)), head)
    model = DistributedDataParallel(net)  # find_unused_parameters stays off: every parameter must get a gradient
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = _data()
    x, y = x[rank * LOCAL:(rank + 1) * LOCAL], y[rank * LOCAL:(rank + 1) * LOCAL]
    unused, methods = [], []
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        _step(model, net, x, y)
        unused += [n for n, p in net.named_parameters() if p.grad is None]
        methods.append(_method(net.block))
        optimizer.step()
    schedule = net.block.policy.schedule
    return {"params": {n: p.detach().clone() for n, p in net.named_parameters()}, "unused": unused,
            "methods": methods, "history": list(getattr(schedule, "history", [])),
            "checks": list(getattr(schedule, "checks", []))}


def _tolerance_adaption(rank: int) -> dict:
    """Adaptive solves on different local data: the tolerance must still move alike on every rank."""
    from torch.nn.parallel import DistributedDataParallel

    field, head = _parts()
    net = _Net(nde.ODEBlock(field, method="dopri5", rtol=1e-3, atol=1e-3, schedule="tolerance_adaption",
                            schedule_options={"initial_tol": 1e-3, "k": 1, "threshold": 0.05}), head)
    model = DistributedDataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = _data()
    # Rank 1 starts from zero, where dopri5's step count stays flat from tol 1e-3 to 1e-5: alone, its test
    # tolerance would be tightened more often than rank 0's, and the ranks' evaluations would fall out of step.
    x = x[rank * LOCAL:(rank + 1) * LOCAL] * (1 - rank)
    y = y[rank * LOCAL:(rank + 1) * LOCAL]
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        _step(model, net, x, y)
        optimizer.step()
    schedule = net.block.policy.schedule
    return {"history": list(schedule.history), "checks": list(schedule.checks)}


def _statistics(rank: int) -> dict:
    """One call on local batches of different sizes and scales: the per-rank numbers differ."""
    field, _ = _parts()
    block = nde.ODEBlock(field, method="dopri5", rtol=1e-6, atol=1e-6, regularizers={"kinetic_energy": 1.0})
    x, _ = _data()
    x = x[: LOCAL - 3 * rank] * (1 + 4 * rank)
    block(x)
    reg = block.regularization()
    return {"local": step_counts(block.stats, reg), "gathered": all_reduce_stats(block.stats, reg),
            "sum": all_ranks_sum([rank + 1.0, 2.0]), "mean": all_ranks_mean([rank + 1.0])}


def _streams(rank: int) -> dict:
    """The seeding rule for blocks built without a seed, and the refusal of synchronized draws without one."""
    field, _ = _parts()
    block = nde.ODEBlock(field, **FIXED, end_time="steer")
    torch.manual_seed(11)  # after the parameters are drawn: the block takes its base seed at its first draw
    block(torch.zeros(2, 4))
    derived = block.policy.generator.initial_seed()
    synchronized = nde.ODEBlock(field, **FIXED, schedule="switching",
                                schedule_options={"members": ["rk4", "midpoint"], "synchronized": True})
    try:
        synchronized(torch.zeros(2, 4))
        refusal = ""
    except ValueError as exc:
        refusal = str(exc)
    try:
        all_reduce_counts({"nfe": 1.0} if rank == 0 else {"steps": 1.0})
        mismatch = ""
    except ValueError as exc:
        mismatch = str(exc)
    return {"derived": derived, "refusal": refusal, "mismatch": mismatch}


RESUMED = ("ode_steer_per_rank", "ode_switching", "ode_switching_synchronized", "sde_dropout")


def _resume(rank: int, out: Path) -> dict:
    """Train 4 steps, or 2, checkpoint with gather_state_dict (rank 0 writes it), reload on every rank, train 2."""
    from torch.nn.parallel import DistributedDataParallel

    x, y = _data()
    x, y = x[rank * LOCAL:(rank + 1) * LOCAL], y[rank * LOCAL:(rank + 1) * LOCAL]
    results: dict = {}
    for name in RESUMED:
        def fresh(name=name):
            kind, options, _, _ = SCENARIOS[name]
            field, head = _parts()
            net = _Net(_block(kind, options, field, SEED, _diffusion(kind, options, field)), head)
            return net, torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)

        def train(net, optimizer, steps):
            model = DistributedDataParallel(net)
            methods = []
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                _step(model, net, x, y)
                methods.append(_method(net.block))
                optimizer.step()
            return methods

        straight, straight_optimizer = fresh()
        straight_methods = train(straight, straight_optimizer, 4)
        first, first_optimizer = fresh()
        methods = train(first, first_optimizer, 2)
        checkpoint = {"model": nde.distributed.gather_state_dict(first), "optimizer": first_optimizer.state_dict()}
        path = out / f"resume-{name}.pt"
        if rank == 0:
            torch.save(checkpoint, path)
        torch.distributed.barrier()
        saved = torch.load(path)
        resumed, resumed_optimizer = fresh()
        resumed.load_state_dict(saved["model"])
        resumed_optimizer.load_state_dict(saved["optimizer"])
        methods += train(resumed, resumed_optimizer, 2)
        # A plain state_dict() holds this rank's stream only: rank 0's loaded on rank 1 is refused.
        torch.save(first.state_dict(), out / f"plain-{name}-{rank}.pt")
        torch.distributed.barrier()
        try:
            fresh()[0].load_state_dict(torch.load(out / f"plain-{name}-0.pt"))
            refusal = ""
        except ValueError as exc:
            refusal = str(exc)
        results[name] = {"equal": [torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters())],
                         "methods": (straight_methods, methods), "refusal": refusal}
    return results


def _main() -> None:
    """Entry point of one rank: RANK and OUT (a fresh folder) come from the environment."""
    rank, out = int(os.environ["RANK"]), Path(os.environ["OUT"])
    torch.set_num_threads(1)
    # A rendezvous file instead of a TCP port: nothing to choose, so no race with other jobs on the machine.
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank,
                                         world_size=WORLD, timeout=datetime.timedelta(seconds=30))
    try:
        with _float64():
            results = {name: _train_rank(name, rank) for name in SCENARIOS}
            results["tolerance_adaption"] = _tolerance_adaption(rank)
            results["statistics"] = _statistics(rank)
            results["streams"] = _streams(rank)
            results["resume"] = _resume(rank, out)
        torch.save(results, out / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------------
# The launch and the single-process references


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("distributed")
    root = Path(__file__).resolve().parents[1]
    procs = []
    for rank in range(WORLD):
        env = {**os.environ, "RANK": str(rank), "OUT": str(out), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", "from tests.test_distributed import _main; _main()"],
                                      cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=90)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("the distributed run did not finish within 90 s (a collective hung)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


def _reference(name: str) -> dict:
    """The single-process run the scenario must match (see the module docstring)."""
    kind, options, seeded, reference = SCENARIOS[name]
    with _float64():
        field, head = _parts()
        diffusion = _diffusion(kind, options, field)
        x, y = _data()
        if reference == "global":
            nets = [_Net(_block(kind, options, field, SEED if seeded else None, diffusion), head)]
            batches = [(x, y)]
        else:
            nets = [_Net(_block(kind, options, field, rank_seed(SEED, rank, WORLD), diffusion), head)
                    for rank in range(WORLD)]
            batches = [(x[r * LOCAL:(r + 1) * LOCAL], y[r * LOCAL:(r + 1) * LOCAL]) for r in range(WORLD)]
        initial = {n: p.detach().clone() for n, p in nets[0].named_parameters()}
        optimizer = torch.optim.SGD(nets[0].parameters(), lr=LR)  # the nets share every parameter
        methods = [[] for _ in nets]
        for _ in range(STEPS):
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients: the mean of the halves' losses.
            losses = []
            for net, batch, picked in zip(nets, batches, methods):
                loss = torch.nn.functional.cross_entropy(net(batch[0]), batch[1]) + net.block.regularization()
                losses.append(loss)
                picked.append(_method(net.block))
            (sum(losses) / len(losses)).backward()
            update = getattr(nets[0].block.policy.schedule, "update", None)
            if update is not None:
                update(nets[0], x, y)
            optimizer.step()
        schedule = nets[0].block.policy.schedule
        return {"params": dict(nets[0].named_parameters()), "initial": initial, "methods": methods,
                "history": list(getattr(schedule, "history", [])), "checks": list(getattr(schedule, "checks", []))}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ranks_hold_identical_parameters_and_every_parameter_gets_a_gradient(ranks, name):
    first, second = (ranks[r][name] for r in range(WORLD))
    assert first["unused"] == [] and second["unused"] == []
    for key, value in first["params"].items():
        assert torch.equal(value, second["params"][key]), key


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_training_matches_the_single_process_reference(ranks, name):
    expected = _reference(name)
    got = ranks[0][name]
    moved = 0.0
    for key, value in expected["params"].items():
        torch.testing.assert_close(got["params"][key], value.detach(), rtol=1e-10, atol=1e-12, msg=key)
        moved = max(moved, float((got["params"][key] - expected["initial"][key]).abs().max()))
    assert moved > 1e-4  # the steps changed the parameters: the comparison is not of untouched ones
    if SCENARIOS[name][3] == "per_rank":
        assert [ranks[r][name]["methods"] for r in range(WORLD)] == expected["methods"]
    assert got["history"] == pytest.approx(expected["history"], rel=1e-9)
    assert len(got["checks"]) == len(expected["checks"])
    for mine, theirs in zip(got["checks"], expected["checks"]):
        assert mine == pytest.approx(theirs, rel=1e-9)


def test_unsynchronized_switching_draws_per_rank_and_synchronized_alike(ranks):
    per_rank = [ranks[r]["ode_switching"]["methods"] for r in range(WORLD)]
    assert per_rank[0] != per_rank[1]
    synchronized = [ranks[r]["ode_switching_synchronized"]["methods"] for r in range(WORLD)]
    assert synchronized[0] == synchronized[1]
    assert len(set(synchronized[0])) == 2  # both members were drawn, so agreeing was not a given


def test_step_adaption_keeps_the_step_equal_across_ranks(ranks):
    histories = [ranks[r]["ode_step_adaption"]["history"] for r in range(WORLD)]
    assert len(histories[0]) == STEPS and histories[0] == histories[1]
    assert ranks[0]["ode_step_adaption"]["checks"] == ranks[1]["ode_step_adaption"]["checks"]
    tolerances = [ranks[r]["tolerance_adaption"] for r in range(WORLD)]
    assert len(tolerances[0]["history"]) == 2 and tolerances[0]["history"] == tolerances[1]["history"]
    # Every rank decided from the same numbers, test tolerance included (alone, rank 1 would tighten it further).
    assert tolerances[0]["checks"] == tolerances[1]["checks"]


def test_statistics_are_gathered_from_every_rank_and_summed(ranks):
    gathered = ranks[0]["statistics"]["gathered"]
    assert isinstance(gathered, RankCounts) and gathered.world_size == WORLD
    assert ranks[1]["statistics"]["gathered"] == gathered
    locals_ = [ranks[r]["statistics"]["local"] for r in range(WORLD)]
    assert list(gathered.per_rank) == locals_
    assert locals_[0]["regularization"] != locals_[1]["regularization"]
    for key in locals_[0]:
        assert gathered.total[key] == pytest.approx(locals_[0][key] + locals_[1][key])
        assert gathered.mean[key] == pytest.approx(gathered.total[key] / WORLD)
    assert gathered.total["nfe_forward"] > 0
    assert ranks[1]["statistics"]["sum"] == [3.0, 4.0] and ranks[0]["statistics"]["mean"] == [1.5]


def test_a_block_without_a_seed_derives_its_rank_stream_from_the_global_generator(ranks):
    torch.manual_seed(11)
    base = int(torch.randint(0, 2**62, ()).item())
    assert [ranks[r]["streams"]["derived"] for r in range(WORLD)] == [rank_seed(base, r, WORLD) for r in range(WORLD)]


def test_synchronized_draws_without_a_seed_and_mismatched_counts_are_refused_on_every_rank(ranks):
    for r in range(WORLD):
        assert "need the block's seed=" in ranks[r]["streams"]["refusal"]
        assert "every rank must pass the same keys" in ranks[r]["streams"]["mismatch"]


@pytest.mark.parametrize("name", RESUMED)
def test_a_run_resumed_from_a_gathered_checkpoint_continues_every_rank_bit_for_bit(ranks, name):
    for r in range(WORLD):
        got = ranks[r]["resume"][name]
        assert got["equal"] and all(got["equal"]), f"rank {r}"
        assert got["methods"][0] == got["methods"][1]
    if name == "ode_switching":  # the ranks drew differently before and after the checkpoint
        assert ranks[0]["resume"][name]["methods"][0] != ranks[1]["resume"][name]["methods"][0]
    assert ranks[0]["resume"][name]["refusal"] == ""
    assert "but not of this rank (1 of 2)" in ranks[1]["resume"][name]["refusal"]


# ------------------------------------------------------------------------------------------------
# One process: the rule's single-process end, checked in-process


def test_rank_seed_is_the_seed_in_one_process_and_distinct_per_rank():
    assert rank_seed(5, 0, 1) == 5
    seeds = [rank_seed(5, r, 4) for r in range(4)]
    assert len(set(seeds)) == 4 and seeds == [rank_seed(5, r, 4) for r in range(4)]
    assert rank_seed(5, 0, 2) != rank_seed(5, 0, 4)
    for args in ((-1, 0, 2), (5, 2, 2), (5, 0, 0), (True, 0, 1), (5.0, 0, 1)):
        with pytest.raises(ValueError, match="rank_seed"):
            rank_seed(*args)


def test_in_one_process_both_streams_are_the_block_stream():
    block = nde.ODEBlock(_Field(), **FIXED, end_time="steer", end_time_options={"synchronized": True}, seed=3)
    assert block.policy.generator is block.policy.synchronized_generator
    assert nde.ODEBlock(_Field(), **FIXED).policy.synchronized_generator is None  # torch's global generator
    plain = nde.ODEBlock(_Field(), **FIXED, end_time="steer", seed=3)
    x = torch.zeros(2, 4)
    for _ in range(3):
        block(x), plain(x)
        assert torch.equal(block.last_t, plain.last_t)


def test_synchronized_switching_changes_nothing_in_one_process():
    members = ["rk4", "midpoint"]
    picked = []
    for synchronized in (False, True):
        block = nde.ODEBlock(_Field(), **FIXED, schedule="switching", seed=4,
                             schedule_options={"members": members, "synchronized": synchronized})
        picked.append([(block(torch.zeros(1, 4)), _method(block))[1] for _ in range(6)])
    assert picked[0] == picked[1] and len(set(picked[0])) == 2


def test_bad_synchronized_options_are_refused():
    with pytest.raises(ValueError, match="keep one of them"):
        nde.ODEBlock(_Field(), **FIXED, end_time="steer", end_time_options={"per_sample": True, "synchronized": True})
    with pytest.raises(TypeError, match=r"synchronized\W* must be True or False"):
        nde.ODEBlock(_Field(), **FIXED, end_time="steer", end_time_options={"synchronized": 1})
    for schedule, options in (("switching", {"members": ["rk4"]}), ("smoothing", {})):
        with pytest.raises(TypeError, match=r"synchronized\W* must be True or False"):
            nde.ODEBlock(_Field(), method="rk2", options={"step_size": 0.25}, schedule=schedule,
                         schedule_options={**options, "synchronized": "yes"})


def test_without_a_process_group_the_reductions_are_local():
    assert all_ranks_mean([1.0, 2.0]) == [1.0, 2.0] and all_ranks_sum([3.0]) == [3.0]
    block = nde.ODEBlock(_Field(), method="dopri5", regularizers={"kinetic_energy": 1.0})
    block(torch.randn(3, 4))
    counts = all_reduce_stats(block.stats, block.regularization())
    assert counts.world_size == 1 and counts.total == counts.per_rank[0] == counts.mean
    assert counts.total["nfe_forward"] == block.stats.nfe_forward
    assert counts.total["steps_accepted"] == block.stats.steps_accepted
    assert step_counts(None) == dict.fromkeys(
        ["nfe_forward", "nfe_backward", "nfe_diffusion", "steps_accepted", "steps_rejected"], 0.0)
    with pytest.raises(TypeError, match="stats must be a block's StepStats"):
        step_counts("block.stats")
