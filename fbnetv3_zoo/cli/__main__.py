"""``python -m fbnetv3_zoo.cli``: the ``fbnetv3`` command without its console script."""

import sys

from fbnetv3_zoo.cli import main

sys.exit(main())
