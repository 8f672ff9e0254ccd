"""``python -m rlteach``: the command line (:mod:`rlteach.cli`)."""

import sys

from rlteach.cli import main

if __name__ == "__main__":
    sys.exit(main())
