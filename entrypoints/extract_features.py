"""MLproject entry point `extract_features` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'extract_features' is not implemented yet (see the open issues).")
