"""``python -m flint.cli``: the same as the ``flint`` command."""

import sys

from flint.cli import main

sys.exit(main())
