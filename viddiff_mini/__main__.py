"""``python -m viddiff_mini`` is the ``viddiff`` command."""

import sys

from viddiff_mini.cli import main

sys.exit(main())
