"""``python -m ecgadapt``: the command line, as the ``ecgadapt`` script (``torchrun ... -m ecgadapt`` starts it)."""

import sys

from ecgadapt.cli import main

if __name__ == "__main__":
    sys.exit(main())
