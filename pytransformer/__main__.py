"""python -m pytransformer: see pytransformer.cli."""

import sys

from .cli import main

sys.exit(main())
