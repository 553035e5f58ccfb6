import sys

from synthscope.cli import main

sys.exit(main())
