"""``python -m ecgadapt.cli``: the ``ecgadapt`` command."""

import sys

from ecgadapt.cli import main

if __name__ == "__main__":
    sys.exit(main())
