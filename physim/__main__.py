"""``python -m physim``: the ``physim`` command."""

import sys

from .cli import main

sys.exit(main())
