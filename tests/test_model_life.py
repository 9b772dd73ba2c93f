"""The whole life of a model holding a block: deepcopy, whole-model save and load, weight averaging."""

import copy
import io
import pathlib
import subprocess
import sys

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

import nde_plugins as nde


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    def forward(self, t, z):
        return self.net(z)


class Model(torch.nn.Module):
    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.block(x))


BLOCKS = {
    "ode default": lambda: nde.ODEBlock(Field()),
    "ode every kind": lambda: nde.ODEBlock(Field(), method="rk4_uv", options={"step_size": 0.25}, schedule="smoothing",
                                           end_time="steer", seed=0,
                                           regularizers={"kinetic_energy": 0.1, "jacobian_frobenius": 0.1}),
    "ode pair": lambda: nde.ODEBlock(Field(), method="tsitouras5", rtol=1e-5, atol=1e-5,
                                     regularizers={"error_estimate": 0.1, "stiffness": 0.1}),
    "ode step adaption": lambda: nde.ODEBlock(Field(), method="euler", options={"step_size": 0.25},
                                              schedule="step_adaption"),
    "sde every kind": lambda: nde.SDEBlock(Field(), "dropout", dt=0.25, end_time="steer", seed=0,
                                           regularizers={"error_estimate": 1.0, "stiffness": 0.1}),
}


def _save_and_load(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", BLOCKS)
def test_a_model_copies_and_saves_whole_at_every_point_of_a_training_step(name):
    model = Model(BLOCKS[name]())
    x = torch.randn(4, 3)
    out = None
    for stage in ("built", "forward", "backward", "eval"):
        if stage == "forward":
            out = model(x)
            reg = model.block.regularization()
        elif stage == "backward":
            (out.sum() + reg).backward()
        elif stage == "eval":
            model.eval()
        for twin in (copy.deepcopy(model), _save_and_load(model)):
            twin.eval()
            model.eval()
            with torch.no_grad():  # evaluation is deterministic (an SDEBlock solves with the noise off)
                torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)
            model.train(stage != "eval")


@pytest.mark.parametrize("name", BLOCKS)
def test_a_copy_made_after_a_call_says_it_has_not_been_called(name):
    model = Model(BLOCKS[name]())
    x = torch.randn(4, 3)
    model(x)
    twin = copy.deepcopy(model)
    if twin.block.regularizers:
        with pytest.raises(RuntimeError, match="is a copy .* that has not been called since"):
            twin.block.regularization()
    twin(x)
    twin.block.regularization()  # its own call


def test_weight_averaging_wraps_a_model_after_a_regularized_call():
    model = Model(BLOCKS["ode every kind"]())
    x = torch.randn(4, 3)
    (model(x).sum() + model.block.regularization()).backward()
    averaged = AveragedModel(model)
    averaged.update_parameters(model)
    averaged.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(averaged(x), model(x))


def test_a_saved_model_with_a_registered_family_loads_in_a_fresh_interpreter(tmp_path):
    model = Model(BLOCKS["ode every kind"]()).eval()
    x = torch.randn(4, 3)
    with torch.no_grad():
        expected = model(x)
    torch.save({"model": model, "x": x, "expected": expected}, tmp_path / "model.pt")
    # The classes of the saved model are this module's: the fresh interpreter imports it first.
    here, saved = str(pathlib.Path(__file__).parent), str(tmp_path / "model.pt")
    code = (f"import torch, sys; sys.path.insert(0, {here!r}); import test_model_life; "
            f"d = torch.load({saved!r}, weights_only=False); "
            "torch.testing.assert_close(d['model'](d['x']), d['expected'], rtol=0, atol=0); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("name", BLOCKS)
def test_the_statistics_of_a_call_save_and_load_with_their_numbers(name):
    block = BLOCKS[name]()
    block(torch.randn(4, 3))
    buffer = io.BytesIO()
    torch.save(block.stats, buffer)  # an SDE's deferred estimates are filled in first
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.summary() == block.stats.summary()
    block.eval()
    with torch.no_grad():
        block(torch.randn(4, 3))
    assert copy.deepcopy(block.stats).summary() == block.stats.summary()  # no graph: a deep copy works
