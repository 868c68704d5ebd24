"""Allow `python -m <package>` as an alias of the console script."""

from .cli import app

app()
