"""libvirt's error bodies (spec.md §4.5) as exceptions, on both sides of the wire.

A failed reply from libvirtd carries ``code`` (virErrorNumber), ``domain`` (virErrorDomain)
and a message; :class:`LibvirtError` keeps all three (and the whole body in ``error``).
It is a :class:`~xdrstream.transport.errors.RemoteFailure`, so a server handler that raises
one answers with exactly that body.

libvirt builds its bodies in a fixed shape, which virsh prints as ``error: MESSAGE``:
``message`` = ``str1 % str2``, where ``str1`` is the code's title with a ``%s`` slot and
``str2`` the detail; ``int1`` = ``int2`` = -1.  :func:`libvirt_error` builds that shape.
"""

from __future__ import annotations

from xdrstream.protocol import RemoteError
from xdrstream.transport.errors import RemoteFailure

# virErrorNumber values used here
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_INVALID_ARG = 8
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_XML_ERROR = 27
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_RPC = 39
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_NO_STORAGE_POOL = 49
VIR_ERR_NO_STORAGE_VOL = 50
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_STORAGE_VOL_EXIST = 90

# virErrorDomain values used here
VIR_FROM_NONE = 0
VIR_FROM_RPC = 7
VIR_FROM_REMOTE = 13
VIR_FROM_STORAGE = 18
VIR_FROM_STREAMS = 38

VIR_ERR_ERROR = 2  # level

# The format libvirt puts in str1 for a code ("%s" alone: the detail is the whole message).
_FORMATS = {
    VIR_ERR_INTERNAL_ERROR: "internal error: %s",
    VIR_ERR_NO_SUPPORT: "this function is not supported by the connection driver: %s",
    VIR_ERR_INVALID_ARG: "invalid argument: %s",
    VIR_ERR_OPERATION_FAILED: "operation failed: %s",
    VIR_ERR_XML_ERROR: "XML error: %s",
    VIR_ERR_SYSTEM_ERROR: "%s",
    VIR_ERR_RPC: "%s",
    VIR_ERR_NO_DOMAIN: "Domain not found: %s",
    VIR_ERR_NO_STORAGE_POOL: "Storage pool not found: %s",
    VIR_ERR_NO_STORAGE_VOL: "Storage volume not found: %s",
    VIR_ERR_OPERATION_INVALID: "Requested operation is not valid: %s",
    VIR_ERR_STORAGE_VOL_EXIST: "storage volume '%s' exists already",
}


class LibvirtError(RemoteFailure):
    """An error reported by a libvirt peer: ``code``, ``domain``, ``message`` (and the
    whole body in ``error``)."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(error)
        self.domain = error.domain
        self.args = (
            f"libvirt error {error.code} (domain {error.domain}): "
            f"{error.message or '(no message)'}",
        )

    @classmethod
    def from_failure(cls, failure: RemoteFailure) -> LibvirtError:
        error = cls(failure.error)
        error.__cause__ = failure
        return error


def libvirt_error(code: int, domain: int, detail: str) -> LibvirtError:
    """A :class:`LibvirtError` in the shape libvirtd sends (see the module docstring)."""
    detail = detail[:4096]
    form = _FORMATS.get(code, "%s")
    body = RemoteError(
        code=code,
        domain=domain,
        message=form.replace("%s", detail),
        level=VIR_ERR_ERROR,
        str1=form,
        str2=detail,
        int1=-1,
        int2=-1,
    )
    return LibvirtError(body)
