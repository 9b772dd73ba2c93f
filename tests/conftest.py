import pytest
import torch

import nde_plugins as nde


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def registry():
    """A private registry with the built-ins only (no entry points)."""
    return nde.Registry(load_entry_points=False, reserved={"tableau": nde.torchdiffeq_method_names})

