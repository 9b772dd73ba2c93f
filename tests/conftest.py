import pytest
import torch

import nde_plugins as nde

# Every test works on tiny tensors, where a second intra-op thread only adds synchronisation; on a
# busy 2-core CI machine two threads made small solves up to 70x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def registry():
    """A private registry with the built-ins only (no entry points)."""
    return nde.Registry(load_entry_points=False, reserved={"tableau": nde.torchdiffeq_method_names})

