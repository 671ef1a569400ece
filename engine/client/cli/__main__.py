"""``python -m engine.client.cli``: the command line without the TUI."""

import sys

from engine.client.cli.entry import main

sys.exit(main())
