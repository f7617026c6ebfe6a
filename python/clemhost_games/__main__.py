"""Entry point: ``python -m clemhost_games`` (started by clemhost)."""

import sys

from clemhost_games.worker import main

sys.exit(main())
