"""Caches are bounded: a training loop that draws a new solver every batch must not grow memory."""

import gc
import tracemalloc
import weakref

import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins import _torchdiffeq

Y0 = torch.ones(2)
T = torch.tensor([0.0, 1.0])


def _solve_with_fresh_members(start: int, count: int) -> None:
    for i in range(start, start + count):
        u = 0.3 + i * 1e-7  # a distinct family member every call, as solver smoothing draws them
        torchdiffeq.odeint(lambda t, y: -y, Y0, T, method="rk2", options={"u": u, "step_size": 0.5})


def _traced_growth(start: int, count: int) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    _solve_with_fresh_members(start, count)
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_memory_stays_flat_when_every_solve_uses_a_new_family_member():
    # Warm up past every cache bound, then measure two equal batches: a leak grows with each draw
    # (about 1.8 KiB per member before the caches were bounded, i.e. ~0.9 MiB per 500 draws).
    # The first traced batch replaces the caches' untraced contents with traced ones, so it is
    # part of the warm-up too.
    _solve_with_fresh_members(0, 300)
    tracemalloc.start()
    try:
        _traced_growth(5_000, 500)
        growth = [_traced_growth(10_000 + k * 500, 500) for k in range(2)]
    finally:
        tracemalloc.stop()
    # A quarter of what a leak would add; allocator and interning noise is a few tens of KiB.
    assert max(growth) < 224 * 1024, f"memory grew by {growth} bytes over 500 fresh members each"


def test_an_unregistered_tableau_is_usable_while_held_and_forgotten_when_dropped():
    heun = nde.Tableau("my_heun", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], b_hat=[1, 0], order=2)
    block = nde.ODEBlock(lambda t, y: -y, method=heun, rtol=1e-5, atol=1e-5)
    name = block.method_name
    del heun
    gc.collect()
    assert name in _torchdiffeq.install()  # the block keeps its method alive
    block(Y0)
    ref = weakref.ref(block._method)
    del block
    # Only the bounded solver caches may still hold it; the name table itself holds it weakly.
    for cached in (_torchdiffeq.adaptive_solver_class, _torchdiffeq._solver_entry):
        cached.cache_clear()
    gc.collect()
    assert ref() is None and name not in _torchdiffeq.install()


def test_solver_entries_and_classes_are_bounded():
    _solve_with_fresh_members(50_000, 300)
    for cached in (_torchdiffeq.fixed_grid_steps, _torchdiffeq.adaptive_solver_class,
                   _torchdiffeq._solver_entry):
        info = cached.cache_info()
        assert info.maxsize is not None and info.currsize <= info.maxsize
