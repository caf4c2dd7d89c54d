"""``python -m adamjax`` = the ``adamjax`` command."""

import sys

from ._cli import main

sys.exit(main())
