"""torch.compile of a model holding a block: the block's call is a compile boundary, the rest compiles."""

import pytest
import torch

import nde_plugins as nde


class Model(torch.nn.Module):
    """An encoder, a block and a decoder: what a user compiles as a whole."""

    def __init__(self, block_for) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(3, 4)
        self.field = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
        self.block = block_for(self.field)
        self.dec = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.dec(self.block(self.enc(x)))


def ode(field):
    return nde.ODEBlock(lambda t, z: field(z), method="dopri5", rtol=1e-5, atol=1e-5,
                        regularizers={"error_estimate": 0.1})


def sde(field):
    return nde.SDEBlock(lambda t, h: field(h), "additive", dt=0.25, seed=0)


@pytest.mark.parametrize("block_for, backend", [(ode, "inductor"), (sde, "aot_eager")])
def test_a_compiled_model_matches_eager_in_training_and_evaluation(block_for, backend):
    torch.manual_seed(0)
    model = Model(block_for)
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(5, 3)
    for training in (True, False):
        model.train(training)
        if isinstance(model.block, nde.SDEBlock):  # the same Brownian path for both runs
            model.block.policy._local.manual_seed(0)
        eager_out = model(x)
        eager_grads = torch.autograd.grad(eager_out.sum(), list(model.parameters()), allow_unused=True) \
            if training else None
        if isinstance(model.block, nde.SDEBlock):
            model.block.policy._local.manual_seed(0)
        out = compiled(x)
        torch.testing.assert_close(out, eager_out)
        if training:
            grads = torch.autograd.grad(out.sum(), list(model.parameters()), allow_unused=True)
            for g, e in zip(grads, eager_grads):
                assert (g is None) == (e is None)
                if g is not None:
                    torch.testing.assert_close(g, e)
    assert model.block.stats.nfe_forward > 0  # the block ran and recorded its statistics


def test_the_regularization_of_a_compiled_call_is_the_eager_one():
    torch.manual_seed(0)
    model = Model(ode)
    x = torch.randn(5, 3)
    model(x)
    eager = model.block.regularization().detach()
    torch.compile(model)(x)
    torch.testing.assert_close(model.block.regularization().detach(), eager)
