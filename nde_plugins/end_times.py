"""Moved to ``nde_plugins.builtins.end_times``; this path stays importable and is that same module."""

import sys

from .builtins import end_times as _module

sys.modules[__name__] = _module
