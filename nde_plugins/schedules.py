"""Moved to ``nde_plugins.builtins.schedules``; this path stays importable and is that same module."""

import sys

from .builtins import schedules as _module

sys.modules[__name__] = _module
