"""MLproject entry point `main` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'main' is not implemented yet (see the open issues).")
