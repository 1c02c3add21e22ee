"""Protocol layer: framing, header, schemas and sans-I/O state machines. Does no I/O."""
