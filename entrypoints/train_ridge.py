"""MLproject entry point `train_ridge` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'train_ridge' is not implemented yet (see the open issues).")
