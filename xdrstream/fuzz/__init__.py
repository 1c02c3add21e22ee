"""fuzz layer (see spec.md)."""
