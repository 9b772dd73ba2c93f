"""``python -m nde_plugins.cli``: the ``nde-plugins`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
