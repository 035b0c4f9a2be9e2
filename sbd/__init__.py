"""sbd — semantic brain decoding: fMRI → CNN features → WordNet concepts → generated images.

The method of Ferrante, Boccato & Toschi (2022), "Semantic Brain Decoding: from fMRI to
conceptually similar image reconstruction of visual stimuli", as an MLflow project.
Data flows one way: ``data → features → decoding → registry → generate → metrics``;
``sbd.steps`` composes them into the MLproject entry points.
"""

__version__ = "0.1.0"
