"""``python -m nde_plugins``: the ``nde-plugins`` command, as torchrun starts it on every rank
(``torchrun --nproc_per_node N -m nde_plugins train ...``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
