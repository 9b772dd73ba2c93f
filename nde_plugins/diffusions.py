"""Moved to ``nde_plugins.builtins.diffusions``; this path stays importable and is that same module."""

import sys

from .builtins import diffusions as _module

sys.modules[__name__] = _module
