"""`uv run python -m bench --help`."""

import sys

from .run import main

sys.exit(main())
