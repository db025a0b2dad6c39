"""hmrec: local-first H&M recommender."""
__version__ = "0.1.0"
