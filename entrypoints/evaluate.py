"""MLproject entry point `evaluate` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'evaluate' is not implemented yet (see the open issues).")
