"""``python -m adamjax`` = the ``adamjax`` command."""

import sys

from .cli import main

sys.exit(main())
