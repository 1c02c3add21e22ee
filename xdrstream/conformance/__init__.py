"""conformance layer (see spec.md)."""
