"""A pytest plugin (entry point ``pytest11``): contract checks of installed plugin packages on request.

Inactive unless asked for: ``pytest --nde-plugins-check DIST`` (repeatable) adds one test per
distribution named, which runs ``nde_plugins.testing.check_distribution(DIST)`` and fails listing
every plugin that breaks the contract. ``--nde-plugins-options JSON`` passes factory options, as
``{"plugin_name": {"option": value}}``. Without the option nothing is added, and the fixture
``nde_plugins_testing`` (the ``nde_plugins.testing`` module) is there for tests that call the
checks themselves.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("nde_plugins", "nde_plugins plugin-contract checks")
    group.addoption("--nde-plugins-check", action="append", default=[], metavar="DIST",
                    help="check every nde_plugins plugin the installed distribution DIST registers (repeatable)")
    group.addoption("--nde-plugins-options", default="{}", metavar="JSON",
                    help='factory options for the checked plugins, as JSON: {"plugin_name": {"option": value}}')


class _DistributionCheck(pytest.Item):
    def __init__(self, *, distribution: str, options: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distribution, self.options = distribution, options

    def runtest(self) -> None:
        from . import check_distribution

        check_distribution(self.distribution, self.options, quiet=True)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[str, int, str]:
        return "nde_plugins contract", 0, f"contract check of {self.distribution}"


class _Checks(pytest.Collector):
    def collect(self) -> list[pytest.Item]:
        config = self.config
        try:
            options = json.loads(config.getoption("nde_plugins_options"))
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"--nde-plugins-options: not JSON ({exc})") from None
        if not isinstance(options, dict):
            raise pytest.UsageError("--nde-plugins-options: give a JSON object {\"plugin_name\": {...}}")
        return [_DistributionCheck.from_parent(self, name=dist, distribution=dist, options=options)
                for dist in config.getoption("nde_plugins_check")]


def pytest_collection_modifyitems(session: Any, config: Any, items: list) -> None:
    if not config.getoption("nde_plugins_check"):
        return
    collector = _Checks.from_parent(session, name="nde_plugins_contract")
    items.extend(collector.collect())


@pytest.fixture
def nde_plugins_testing() -> Any:
    """The ``nde_plugins.testing`` module: ``check_plugin`` and ``check_distribution``."""
    from .. import testing

    return testing
