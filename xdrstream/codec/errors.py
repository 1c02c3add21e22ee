"""Exceptions raised by the XDR schema compiler and the generated codecs."""

from __future__ import annotations


class SchemaError(ValueError):
    """A ``.x`` schema could not be lexed, parsed or resolved.

    ``str()`` starts with ``file:line:col:`` naming where the problem is.
    """

    def __init__(self, message: str, filename: str = "<schema>", line: int = 0, col: int = 0):
        self.filename = filename
        self.line = line
        self.col = col
        self.reason = message
        super().__init__(f"{filename}:{line}:{col}: {message}")


class CodecError(ValueError):
    """Base of :class:`DecodeError` and :class:`EncodeError`.

    ``path`` names the value inside the top-level type (``msg.body.items[3].name``);
    ``offset`` is the byte offset into the buffer given to ``unpack``/``unpack_from``
    (``None`` for most encode errors).
    """

    def __init__(self, reason: str, path: str, offset: int | None):
        self.reason = reason
        self.path = path
        self.offset = offset
        where = path if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"{where}: {reason}")


class DecodeError(CodecError):
    """Bytes are not a valid XDR encoding of the requested type."""


class EncodeError(CodecError):
    """A Python value cannot be encoded as the requested XDR type."""
