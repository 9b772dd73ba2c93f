"""Moved to ``nde_plugins.builtins.adaption``; this path stays importable and is that same module."""

import sys

from .builtins import adaption as _module

sys.modules[__name__] = _module
