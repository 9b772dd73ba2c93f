"""The built-in plugins, one module per kind, registered exactly like a third-party package.

``plugins.DEFAULT_PLUGINS`` lists these modules; the registry imports each and calls its hooks, as it
does for an entry point. Nothing in the library's core imports them: a built-in is found by its
registered name like any other plugin. (Their old module paths, ``nde_plugins.regularizers`` and
the like, still import: they are these modules.)
"""
