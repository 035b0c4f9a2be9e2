"""MLproject entry point `train_knn` (see DESIGN.md). Not implemented yet."""

import sys

sys.exit("sbd: entry point 'train_knn' is not implemented yet (see the open issues).")
