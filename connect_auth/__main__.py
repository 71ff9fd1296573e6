"""``python -m connect_auth``: the same as the ``connect-auth`` command."""

import sys

from .cli import main

sys.exit(main())
