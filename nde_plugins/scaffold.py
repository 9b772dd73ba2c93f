"""``nde-plugins new``: a ready plugin package, one small working plugin per requested kind.

``write_package(name, parent, kinds)`` writes ``parent/name/`` with ``pyproject.toml`` (one entry
point per kind in the ``nde_plugins`` group), a module per kind whose plugin runs as it is and
says in comments what to change, ``tests/test_contract.py`` (the kit of ``nde_plugins.testing``
over the whole distribution), a ``tox.ini`` across torchdiffeq 0.2.4/0.2.5 and torchsde
0.2.5/0.2.6, and a README. Plugin names are prefixed with the package's module name, so that
they stay unique among installed plugins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

#: The kinds a package can hold: the module written for each, and its entry-point key.
KINDS = ("tableau", "diffusion", "end_time", "regularizer", "schedule")
_MODULES = {"tableau": "tableaux", "diffusion": "diffusions", "end_time": "end_times",
            "regularizer": "regularizers", "schedule": "schedules"}
#: A distribution name the scaffold takes: what pip and import both accept once '-' becomes '_'.
_NAME = re.compile(r"[a-z][a-z0-9_-]{1,48}[a-z0-9]")


def check_name(name: str) -> str:
    """The import name of distribution ``name``; ``ValueError`` naming the rule when it is not one."""
    if not _NAME.fullmatch(name) or "--" in name or "__" in name:
        raise ValueError(f"{name!r} is not a package name this command writes: 3 to 50 characters, lower-case "
                         "letters, digits, '-' and '_', starting with a letter (e.g. acme-solvers)")
    return name.replace("-", "_")


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """``kinds`` in the order of ``KINDS``, each once; ``ValueError`` naming an unknown one."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {', '.join(KINDS)}, got {', '.join(unknown) or 'none'}")
    return [kind for kind in KINDS if kind in kinds]


def write_package(name: str, parent: Path, kinds: Sequence[str] = KINDS) -> Path:
    """Write the package ``parent/name`` and return its folder. Refuses an existing folder."""
    module = check_name(name)
    kinds = check_kinds(kinds)
    root = Path(parent) / name
    if root.exists():
        raise FileExistsError(f"{str(root)!r} exists already; choose another name or remove it")
    if not Path(parent).is_dir():
        raise FileNotFoundError(f"the folder {str(parent)!r} does not exist; create it first")
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        "tox.ini": _TOX,
        f"{module}/__init__.py": '"""{name}: nde_plugins plugins."""\n',
        "tests/test_contract.py": _TEST,
    }
    for kind in kinds:
        files[f"{module}/{_MODULES[kind]}.py"] = _PLUGINS[kind]
    entry_points = "\n".join(f'{_MODULES[kind]} = "{module}.{_MODULES[kind]}"' for kind in kinds)
    options = {"schedule": f'"{module}_alternate": {{"every": 2}}'}
    test_options = ", ".join(options[kind] for kind in kinds if kind in options)
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("{entry_points}", entry_points).replace("{test_options}", test_options)
                          .replace("{module}", module).replace("{name}", name))
    return root


_PYPROJECT = '''[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "nde_plugins plugins"
requires-python = ">=3.10"
# The plugin contract is nde_plugins 0.1's; a later minor version may change it.
dependencies = ["nde_plugins>=0.1,<0.2", "torch>=2.0", "torchdiffeq>=0.2.4", "torchsde>=0.2.5"]

[project.optional-dependencies]
test = ["pytest"]

# One entry point per plugin module: nde_plugins loads them on its first lookup.
[project.entry-points.nde_plugins]
{entry_points}

[tool.setuptools]
packages = ["{module}"]
'''

_README = '''# {name}

Plugins for [nde_plugins](https://pypi.org/project/nde_plugins/), one module per kind in
`{module}/`. Each works as written; its comments say what to change.

    pip install -e ".[test]" && pytest        # the contract checks of nde_plugins.testing
    tox                                         # the same across torchdiffeq and torchsde versions
    nde-plugins plugins                         # lists the installed plugins, these included
'''

_TOX = '''[tox]
requires = tox>=4
env_list = py3-td{024,025}-sde{025,026}

[testenv]
package = editable
extras = test
deps =
    td024: torchdiffeq==0.2.4
    td025: torchdiffeq==0.2.5
    sde026: torchsde==0.2.6
# torchsde 0.2.5's metadata ("numpy>=1.19.*") is refused by pip >= 24.1: installed with an older pip.
commands_pre =
    sde025: python -m pip install -q "pip<24.1"
    sde025: python -m pip install -q torchsde==0.2.5
commands =
    python -m pytest {posargs:-q}
'''

_TEST = '''"""Every plugin of {name} honours the nde_plugins contract (see nde_plugins.testing)."""

from nde_plugins import testing


def test_every_plugin_honours_the_contract():
    # Give a plugin whose factory needs options its options here: {"plugin_name": {"option": value}}.
    testing.check_distribution("{name}", options={{test_options}})
'''

_PLUGINS = {
    "tableau": '''"""A tableau plugin: Ralston's third-order method with Heun's step times, as a starting point.

Change the name, the coefficients and the declared order: the order conditions up to ``order``
are checked when this module is imported, and ``b_hat`` (an embedded solution) makes it adaptive.
"""

from nde_plugins import Tableau, hookimpl

TABLEAU = Tableau(
    "{module}_rk3",
    c=[0, 1 / 2, 1],
    a=[[], [1 / 2], [-1, 2]],
    b=[1 / 6, 2 / 3, 1 / 6],
    order=3,
    description="Kutta's third-order method",
)


@hookimpl
def register_tableaux(register):
    register(TABLEAU)
''',
    "diffusion": '''"""A diffusion plugin: noise of a fixed size on every component, G = sigma.

The factory takes the drift first (unused here) and the options after it.
"""

import torch

from nde_plugins import Diffusion, hookimpl


class ConstantNoise(Diffusion):
    """G(t, h) = sigma, shaped like h; change forward to your noise."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
            raise ValueError(f"diffusion '{module}_constant': sigma must be a number >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def forward(self, t, h, f):
        return torch.full_like(h, self.sigma)


def constant_noise(drift, sigma: float = 0.1) -> ConstantNoise:
    return ConstantNoise(sigma)


@hookimpl
def register_diffusions(register):
    register("{module}_constant", constant_noise)
''',
    "end_time": '''"""An end-time sampler plugin: the grid's last time moved back at random, by up to b of its interval.

Draw only with the generator passed in (None means torch's global one), so that a seeded block
draws reproducibly.
"""

import torch

from nde_plugins import hookimpl


class ShortenLast:
    """ends = t, except ends[-1] ~ Uniform(t[-1] - b (t[-1] - t[-2]), t[-1])."""

    def __init__(self, b: float = 0.5) -> None:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < 1:
            raise ValueError(f"end time '{module}_shorten_last': b must be a fraction, 0 < b < 1, got {b!r}")
        self.b = float(b)

    def __call__(self, t, generator, batch=None):
        shape = () if batch is None else (batch,)
        u = torch.rand(shape, generator=generator, dtype=torch.float64).to(t)
        ends = t.clone() if batch is None else t.expand(batch, len(t)).clone()
        ends[..., -1] = t[-1] - self.b * u * (t[-1] - t[-2])
        return ends


@hookimpl
def register_end_time_samplers(register):
    register("{module}_shorten_last", ShortenLast)
''',
    "regularizer": '''"""A step-regularizer plugin: squared error ratios weighted by the step, sum_j E_j^2 |h_j|.

``requires`` names what it reads; the block records exactly that and refuses solvers and modes
that cannot provide it.
"""

import torch

from nde_plugins import hookimpl


class SquaredErrors:
    requires = frozenset({"error_estimate", "graph"})

    def __call__(self, stats):
        errors, steps = stats.error_terms()  # E_j (with their graph) and |h_j| of the accepted steps
        if errors.numel() == 0:
            return torch.zeros(())
        return (errors.square() * steps).sum()


@hookimpl
def register_step_regularizers(register):
    register("{module}_squared_errors", SquaredErrors)
''',
    "schedule": '''"""A solver-schedule plugin: every ``every``-th training call solves with half the base step.

``bind(base)`` is called once with the block's base solver; ``members(state)`` on every call.
Evaluation always solves with the base member (a schedule must be deterministic there).
"""

from nde_plugins import Member, hookimpl


class Alternate:
    def __init__(self, every: int = 2) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"schedule '{module}_alternate': every must be an int >= 1, got {every!r}")
        self.every = every

    def bind(self, base) -> None:
        self.base = base
        step = base.options.get("step_size")
        # On a fixed grid the other member halves the step; an adaptive base is left as it is.
        options = {"step_size": step / 2} if step is not None else {}
        self.other = Member(base.method, dict(base.params), options=options)
        base.validate(self.other)

    def members(self, state):
        if not state.training or state.iteration % self.every:
            return [self.base.member]
        return [self.other]


@hookimpl
def register_solver_schedules(register):
    register("{module}_alternate", Alternate)
''',
}

__all__ = ["KINDS", "check_kinds", "check_name", "write_package"]
