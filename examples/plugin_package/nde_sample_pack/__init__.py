"""A sample third-party nde_plugins package: one plugin module per kind, each an entry point.

Nothing is imported here: nde_plugins imports each plugin module itself, on its first lookup.
"""

__version__ = "0.1.0"
