"""aetrack's version, importable from any layer (the package's `__init__` re-exports train)."""

__version__ = "0.1.0"
