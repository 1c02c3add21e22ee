"""Recorded traffic: packet captures and descriptions of recorded frames.

Builds on :mod:`xdrstream.protocol` (framing, bodies, programs) and stays out of it, so the
sans-I/O engine holds only what a connection needs. Pure functions of bytes, no I/O
(the CLI module reads the file it is given):

* :mod:`.pcap` -- read pcap/pcapng, reassemble TCP by sequence number, write pcapng;
* :mod:`.decode` -- describe every message of a raw frame stream, a capture, or frames
  already cut apart (conformance traces);
* :mod:`.commands` -- ``xdrstream decode``.
"""
