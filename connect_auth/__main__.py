"""``python -m connect_auth``: the same as the ``connect-auth`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # importing this module (a docs tool does) runs nothing
    sys.exit(main())
