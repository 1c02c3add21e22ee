"""transport layer (see spec.md)."""
