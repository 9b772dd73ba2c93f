"""Moved to ``nde_plugins.builtins.tableaux``; this path stays importable and is that same module."""

import sys

from ..builtins import tableaux as _module

sys.modules[__name__] = _module
