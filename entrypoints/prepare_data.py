"""MLproject entry point `prepare_data` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'prepare_data' is not implemented yet (see the open issues).")
