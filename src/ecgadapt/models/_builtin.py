"""Imports that register the built-in models (each module registers itself on import)."""
