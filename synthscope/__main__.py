"""``python -m synthscope``: the same command line as the ``synthscope`` console script."""

import sys

from synthscope.cli import main

if __name__ == "__main__":  # not when a spawned process imports it
    sys.exit(main())
