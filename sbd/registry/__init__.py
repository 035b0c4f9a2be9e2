"""Registered pyfunc models: names, registration, aliases.

Names (DESIGN.md):

- ridge:   ``sbd-<dataset>-s<subject>-<roi>-ridge``
- kNN:     ``sbd-<dataset>-<backbone>-knn``
- decoder: ``sbd-<dataset>-s<subject>-<roi>-decoder``

Aliases: ``candidate`` = the latest registered version; ``champion`` = the version with
the best validation score (tag ``val_score``), moved only when a new version beats it.
"""

from sbd.registry.common import model_name, register_model_version

__all__ = ["model_name", "register_model_version"]
