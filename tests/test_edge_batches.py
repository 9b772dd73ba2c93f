"""Edge batches: an empty batch gives an empty output, zero counts and zero regularization; a batch of one works."""

import pytest
import torch

import nde_plugins as nde


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, t, z):
        return torch.tanh(self.lin(z))


EVERY_KIND = dict(method="rk2", options={"step_size": 0.25}, schedule="smoothing", end_time="steer",
                  regularizers={"error_estimate": 0.1, "kinetic_energy": 0.1, "jacobian_frobenius": 0.1}, seed=0)

BLOCKS = {
    "ode dopri5": lambda: nde.ODEBlock(Field(), method="dopri5",
                                       regularizers={"error_estimate": 0.1, "stiffness": 0.1}),
    "ode every kind": lambda: nde.ODEBlock(Field(), **{**EVERY_KIND, "method": "rk2_pair",
                                                      "regularizers": {"error_estimate": 0.1, "kinetic_energy": 0.1,
                                                                       "jacobian_frobenius": 0.1}}),
    "ode per sample": lambda: nde.ODEBlock(Field(), method="rk2", options={"step_size": 0.25}, end_time="steer",
                                           end_time_options={"per_sample": True}, return_all=True, seed=0),
    "sde every kind": lambda: nde.SDEBlock(Field(), "dropout", dt=0.25, end_time="steer", seed=0,
                                           regularizers={"error_estimate": 1.0, "stiffness": 0.1,
                                                         "kinetic_energy": 0.1}),
}


@pytest.mark.parametrize("name", BLOCKS)
def test_an_empty_batch_gives_an_empty_output_zero_counts_and_zero_regularization(name):
    block = BLOCKS[name]()
    generator_state = block.policy.generator.get_state() if block.policy.generator is not None else None
    for training in (True, False):
        block.train(training)
        z = block(torch.zeros(0, 3))
        expected = (len(block.t), 0, 3) if block.return_all else (0, 3)
        assert z.shape == expected
        assert block.stats.nfe_forward == 0 and block.stats.steps == []
        reg = block.regularization()
        assert reg.shape == () and float(reg) == 0.0
    if generator_state is not None:  # nothing was drawn for an empty batch
        assert torch.equal(block.policy.generator.get_state(), generator_state)
    assert block.iteration == 1


def test_test_time_noise_on_an_empty_batch_keeps_the_sample_dimension():
    block = nde.SDEBlock(Field(), "additive", dt=0.25, test_time_noise=True, samples=3).eval()
    assert block(torch.zeros(0, 3)).shape == (0, 3)
    assert block(torch.zeros(0, 3), return_samples=True).shape == (3, 0, 3)


@pytest.mark.parametrize("name", BLOCKS)
def test_a_batch_of_one_trains_with_every_kind(name):
    block = BLOCKS[name]()
    x = torch.randn(1, 3)
    z = block(x)
    (z.square().sum() + block.regularization()).backward()
    assert all(p.grad is not None for p in block.parameters() if p.requires_grad)
