"""MLproject entry point `generate` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'generate' is not implemented yet (see the open issues).")
