"""MLproject entry point `build_decoder` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'build_decoder' is not implemented yet (see the open issues).")
