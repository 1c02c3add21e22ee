"""Stream endpoints: where a restored stream goes and a saved one comes from.

:mod:`~xdrstream.endpoints.sink` is the endpoint interface and the pipe plumbing,
:mod:`~xdrstream.endpoints.qemu` drives a real QEMU over QMP, and
:mod:`~xdrstream.endpoints.qemu_stub` is the QEMU stand-in process.
"""
