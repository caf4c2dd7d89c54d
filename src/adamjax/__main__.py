"""``python -m adamjax`` = the ``adamjax`` command."""

from .cli import console

console()
