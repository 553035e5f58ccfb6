"""``python -m synthscope``: the same command line as the ``synthscope`` console script."""

import sys

from synthscope.cli import main

sys.exit(main())
