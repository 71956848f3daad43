"""``python -m mutomo ...``: the command line (:mod:`mutomo.app.cli`)."""

import sys

from mutomo.app.cli import main

sys.exit(main())
