"""A run resumed from state_dict() is bit-for-bit the uninterrupted one (CPU): weights and training-time state."""

import io

import pytest
import torch

import nde_plugins as nde


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, t, z):
        return self.net(z)


class Model(torch.nn.Module):
    def __init__(self, block_for) -> None:
        super().__init__()
        self.block = block_for(Field())
        self.head = torch.nn.Linear(2, 3)

    def forward(self, x):
        return self.head(self.block(x))


BLOCKS = {
    "step adaption": lambda f: nde.ODEBlock(f, method="euler", options={"step_size": 0.25}, schedule="step_adaption",
                                            schedule_options={"k": 2, "initial_step": 0.25}),
    "tolerance adaption": lambda f: nde.ODEBlock(f, method="dopri5", schedule="tolerance_adaption",
                                                 schedule_options={"k": 2, "initial_tol": 1e-3}),
    "smoothing + steer": lambda f: nde.ODEBlock(f, method="rk4_uv", options={"step_size": 0.25}, schedule="smoothing",
                                                end_time="steer", regularizers={"kinetic_energy": 0.01}, seed=0),
    "seeded sde": lambda f: nde.SDEBlock(f, "dropout", dt=0.25, end_time="steer", seed=0),
}

X = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))


def train(model, optimizer, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), Y) + model.block.regularization()
        loss.backward()
        model.block.update(model, X, Y)
        optimizer.step()


def fresh(name):
    torch.manual_seed(0)
    model = Model(BLOCKS[name])
    return model, torch.optim.Adam(model.parameters(), lr=0.05)


@pytest.mark.parametrize("name", BLOCKS)
def test_a_resumed_run_is_the_uninterrupted_one_bit_for_bit(name):
    model, optimizer = fresh(name)
    train(model, optimizer, 6)

    first, first_optimizer = fresh(name)
    train(first, first_optimizer, 3)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)  # weights_only: the block's state is plain tensors and numbers
    resumed, resumed_optimizer = fresh(name)
    resumed.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    train(resumed, resumed_optimizer, 3)

    for (key, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        if key.endswith("_extra_state"):
            continue
        assert torch.equal(a, b), key
    assert resumed.block.iteration == model.block.iteration >= 6  # (adaption checks call the block too)
    schedule = model.block.schedule
    if hasattr(schedule, "history"):
        assert resumed.block.schedule.history == schedule.history


def test_a_state_dict_from_before_the_training_state_still_loads_with_one_warning():
    model, _ = fresh("step adaption")
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    other, _ = fresh("step adaption")
    with pytest.warns(UserWarning, match="no training-time state .* weights are loaded"):
        other.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))


def test_a_saved_block_state_of_another_version_is_refused():
    model, _ = fresh("smoothing + steer")
    state = model.state_dict()
    state["block._extra_state"] = {**state["block._extra_state"], "version": 99}
    with pytest.raises(ValueError, match="version 99; this nde_plugins reads version 1"):
        model.load_state_dict(state)


def test_a_seeded_checkpoint_loaded_into_a_block_without_its_own_stream_is_refused():
    model, _ = fresh("smoothing + steer")
    train(model, torch.optim.SGD(model.parameters(), lr=0.0), 1)
    torch.manual_seed(0)
    unseeded = Model(lambda f: nde.ODEBlock(f, method="rk4_uv", options={"step_size": 0.25}, schedule="smoothing",
                                            end_time="steer", regularizers={"kinetic_energy": 0.01}))
    with pytest.raises(ValueError, match="draws from torch's global generator; build it with the same seed="):
        unseeded.load_state_dict(model.state_dict())


def test_a_checkpoint_of_another_rank_is_refused_and_of_another_world_size_restarts_the_streams():
    # What a one-process run reads in a checkpoint written on rank 1 of 2, or on a run of 4 processes.
    model, _ = fresh("seeded sde")
    state = model.state_dict()
    streams = state["block._extra_state"]["streams"]
    other_rank = {**state, "block._extra_state": {**state["block._extra_state"],
                                                  "streams": {**streams, "ranks": {1: streams["ranks"][0]}}}}
    with pytest.raises(ValueError, match=r"rank\(s\) \[1\] but not of this rank \(0 of 1\).*gather_state_dict"):
        model.load_state_dict(other_rank)
    other_world = {**state, "block._extra_state": {**state["block._extra_state"],
                                                   "streams": {**streams, "world_size": 4}}}
    with pytest.warns(UserWarning, match="saved by a run on 4 process.*restart by the seeding rule"):
        model.load_state_dict(other_world)


def test_gather_state_dict_is_the_state_dict_in_one_process():
    model, _ = fresh("seeded sde")
    gathered, plain = nde.distributed.gather_state_dict(model), model.state_dict()
    assert gathered.keys() == plain.keys()
    assert torch.equal(gathered["block._extra_state"]["streams"]["ranks"][0],
                       plain["block._extra_state"]["streams"]["ranks"][0])
