"""xdrstream: libvirt's XDR RPC protocol with bulk data streams, specified, implemented,
tested and fuzzed. See spec.md for the normative protocol description."""

__version__ = "0.1.0"
