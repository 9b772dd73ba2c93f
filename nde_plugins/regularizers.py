"""Moved to ``nde_plugins.builtins.regularizers``; this path stays importable and is that same module."""

import sys

from .builtins import regularizers as _module

sys.modules[__name__] = _module
