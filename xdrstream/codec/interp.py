"""A slow, exact interpreter of the type model.

The generated code only says *that* input is invalid; this walks the same value or bytes
with full bookkeeping to say *where* (type path, byte offset) and *why*. It applies the same
rules as the generated code, including the depth limit for recursive types, and also
serves the tests as an independent oracle.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from xdrstream.codec import model as m
from xdrstream.codec.errors import DecodeError, EncodeError
from xdrstream.codec.model import XType

_ZEROS = (b"", b"\0", b"\0\0", b"\0\0\0")
_BOOL = {False: 0, True: 1}


def is_bytes(value: object) -> bool:
    """bytes, bytearray, or a memoryview of single bytes (what ``opaque`` accepts)."""
    if isinstance(value, (bytes, bytearray)):
        return True
    return isinstance(value, memoryview) and value.itemsize == 1 and value.ndim == 1


class Interpreter:
    def __init__(
        self,
        classes: Mapping[int, Any],
        max_depth: int,
        min_size: Mapping[int, float],
        strict_enums: bool = True,
        lenient: bool = False,
    ):
        self.classes = classes  # id(Struct/Union_/Enum) -> generated class
        self.max_depth = max_depth
        self.min_size = min_size  # id(type) -> smallest encoding (Model.min_size)
        self.strict_enums = strict_enums  # False: undeclared enum values are plain ints
        self.lenient = lenient  # libtirpc-compatible decoding (xdrstream.codec's docs)
        self.errors = "surrogateescape" if lenient else "strict"  # of string UTF-8

    # -- decoding ----------------------------------------------------------------------------

    def decode(self, t: XType, buf: Any, off: int, path: str, depth: int = 0) -> tuple[Any, int]:
        if isinstance(t, (m.Struct, m.Union_)):
            depth = depth + 1 if t.recursive else 0
            if depth > self.max_depth:
                raise DecodeError(
                    f"nesting too deep (more than {self.max_depth} levels)", path, off
                )
        if isinstance(t, m.Prim):
            value = self.word(buf, off, ">" + t.fmt, path, t.xname)
            if t.narrow and self.lenient:
                return t.wrap(value), off + t.size  # libtirpc: *sp = (short) l
            if t.narrow and not t.lo <= value <= t.hi:
                raise DecodeError(
                    f"{value} is outside the range of {t.xname} ({t.lo}..{t.hi})", path, off
                )
            return value, off + t.size
        if isinstance(t, m.Bool):
            raw = self.word(buf, off, ">I", path, "bool")
            if self.lenient:
                return raw != 0, off + 4
            if raw not in (0, 1):
                raise DecodeError(f"bool must be 0 or 1, not {raw}", path, off)
            return raw == 1, off + 4
        if isinstance(t, m.Enum):
            raw = self.word(buf, off, ">i", path, f"enum {t.name}")
            if raw not in t.members.values() and not self.strict_enums:
                return raw, off + 4
            if raw not in t.members.values():
                raise DecodeError(f"{raw} is not a member of enum {t.name}", path, off)
            return self.classes[id(t)](raw), off + 4
        if isinstance(t, (m.String, m.Opaque)):
            if isinstance(t, m.Opaque) and t.fixed:
                n = t.size
                start = off
            else:
                n = self.word(buf, off, ">I", path, "length")
                if n > t.size:
                    raise DecodeError(f"length {n} exceeds the bound {t.size}", path, off)
                start = off + 4
            end = start + n
            padded = end + (-n & 3)
            if padded > len(buf):
                raise DecodeError(
                    f"truncated: {n} bytes of data and {padded - end} of padding need "
                    f"{padded - start} bytes, {max(len(buf) - start, 0)} remain",
                    path,
                    start,
                )
            if bytes(buf[end:padded]) != _ZEROS[padded - end] and not self.lenient:
                raise DecodeError("non-zero padding bytes", path, end)
            data = buf[start:end]
            if isinstance(t, m.String):
                try:
                    return str(data, "utf-8", self.errors), padded
                except UnicodeDecodeError as exc:
                    raise DecodeError(
                        f"invalid UTF-8 ({exc.reason} at byte {exc.start} of the string)",
                        path,
                        start + exc.start,
                    ) from None
            return data, padded
        if isinstance(t, m.Optional):
            flag = self.word(buf, off, ">I", path, "optional-data flag")
            if flag == 0:
                return None, off + 4
            if flag != 1 and not self.lenient:
                raise DecodeError(f"optional-data flag must be 0 or 1, not {flag}", path, off)
            return self.decode(t.element, buf, off + 4, path, depth)
        if isinstance(t, m.Array):
            start = off
            if t.fixed:
                n = t.size
            else:
                n = self.word(buf, off, ">I", path, "array length")
                if n > t.size:
                    raise DecodeError(f"array length {n} exceeds the bound {t.size}", path, off)
                off += 4
            least = max(int(self.least(t.element)), 1)
            if off + n * least > len(buf):
                raise DecodeError(
                    f"truncated: {n} elements need at least {n * least} bytes, "
                    f"{max(len(buf) - off, 0)} remain",
                    path,
                    start,
                )
            items = []
            for i in range(n):
                item, off = self.decode(t.element, buf, off, f"{path}[{i}]", depth)
                items.append(item)
            return items, off
        if isinstance(t, m.Struct) and t.linked:
            return self.decode_list(t, buf, off, path, depth)
        if isinstance(t, m.Struct):
            values = []
            for f in t.fields:
                value, off = self.decode(f.type, buf, off, f"{path}.{f.name}", depth)
                values.append(value)
            return self.classes[id(t)](*values), off
        return self.decode_union(t, buf, off, path, depth)

    def decode_list(
        self, t: m.Struct, buf: Any, off: int, path: str, depth: int
    ) -> tuple[Any, int]:
        """A linked list in a loop: node ``i`` after the first is ``path.next[i]``."""
        cls = self.classes[id(t)]
        link = t.fields[-1]
        head = prev = None
        where = path
        i = 0
        while True:
            values = []
            for f in t.fields[:-1]:
                value, off = self.decode(f.type, buf, off, f"{where}.{f.name}", depth)
                values.append(value)
            node = cls(*values, None)
            if prev is None:
                head = node
            else:
                setattr(prev, link.py, node)
            prev = node
            flag = self.word(buf, off, ">I", f"{where}.{link.name}", "optional-data flag")
            if flag == 0:
                return head, off + 4
            if flag != 1 and not self.lenient:
                raise DecodeError(
                    f"optional-data flag must be 0 or 1, not {flag}", f"{where}.{link.name}", off
                )
            off += 4
            i += 1
            where = f"{path}.{link.name}[{i}]"

    def decode_union(
        self, t: m.Union_, buf: Any, off: int, path: str, depth: int
    ) -> tuple[Any, int]:
        dtype = t.discriminant_type
        assert dtype is not None
        dpath = f"{path}.{t.discriminant}"
        disc, after = self.decode(dtype, buf, off, dpath, depth)
        arm = self.arm_for(t, int(disc))
        if arm is None:
            raise DecodeError(
                f"discriminant {int(disc)} selects no arm of union {t.name}", dpath, off
            )
        if arm.type is None:
            return self.classes[id(t)](disc, None), after
        value, end = self.decode(arm.type, buf, after, f"{path}.{arm.name}", depth)
        return self.classes[id(t)](disc, value), end

    @staticmethod
    def arm_for(t: m.Union_, disc: int) -> m.Arm | None:
        for arm in t.arms:
            if disc in arm.labels:
                return arm
        return t.default

    def least(self, t: XType) -> float:
        return self.min_size.get(id(t), 0)

    @staticmethod
    def word(buf: Any, off: int, fmt: str, path: str, what: str) -> Any:
        size = struct.calcsize(fmt)
        if off + size > len(buf):
            remain = max(len(buf) - off, 0)
            raise DecodeError(f"truncated: {what} needs {size} bytes, {remain} remain", path, off)
        return struct.unpack_from(fmt, buf, off)[0]

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, t: XType, value: Any, path: str, out: bytearray, depth: int = 0) -> None:
        if isinstance(t, (m.Struct, m.Union_)):
            depth = depth + 1 if t.recursive else 0
            if depth > self.max_depth:
                raise EncodeError(
                    f"nesting too deep (more than {self.max_depth} levels)", path, None
                )
        if isinstance(t, m.Prim):
            if t.kind in ("float", "double"):
                try:
                    out += struct.pack(">" + t.fmt, value)
                except struct.error:
                    raise EncodeError(
                        f"{t.xname} needs a float, not {_kind(value)}", path, None
                    ) from None
                except OverflowError:
                    raise EncodeError(
                        f"{value!r} does not fit in a {t.xname}", path, None
                    ) from None
                return
            if not hasattr(type(value), "__index__") or isinstance(value, float):
                raise EncodeError(f"{t.xname} needs an int, not {_kind(value)}", path, None)
            n = value.__index__()
            if not t.lo <= n <= t.hi:
                raise EncodeError(
                    f"{n} is outside the range of {t.xname} ({t.lo}..{t.hi})", path, None
                )
            out += struct.pack(">" + t.fmt, n)
            return
        if isinstance(t, m.Bool):
            try:
                word = _BOOL[value]  # the generated code's rule: anything equal to 0 or 1
            except (KeyError, TypeError):
                raise EncodeError(f"bool needs True or False, not {value!r}", path, None) from None
            out += struct.pack(">I", word)
            return
        if isinstance(t, m.Enum):
            if not isinstance(value, int):
                raise EncodeError(f"enum {t.name} needs a member, not {_kind(value)}", path, None)
            if value not in t.members.values() and self.strict_enums:
                raise EncodeError(f"{int(value)} is not a member of enum {t.name}", path, None)
            if not -(2**31) <= value < 2**31:
                raise EncodeError(f"{int(value)} does not fit in enum {t.name}", path, None)
            out += struct.pack(">i", int(value))
            return
        if isinstance(t, m.String):
            if not isinstance(value, str):
                raise EncodeError(f"string needs a str, not {_kind(value)}", path, None)
            try:
                data = value.encode("utf-8", self.errors)
            except UnicodeEncodeError as exc:
                raise EncodeError(f"not encodable as UTF-8: {exc.reason}", path, None) from None
            self.encode_bytes(t, data, path, out)
            return
        if isinstance(t, m.Opaque):
            if not is_bytes(value):
                raise EncodeError(f"opaque needs bytes, not {_kind(value)}", path, None)
            self.encode_bytes(t, value, path, out)
            return
        if isinstance(t, m.Optional):
            if value is None:
                out += b"\0\0\0\0"
                return
            out += b"\0\0\0\1"
            self.encode(t.element, value, path, out, depth)
            return
        if isinstance(t, m.Array):
            if not isinstance(value, (list, tuple)):
                raise EncodeError(f"array needs a list or tuple, not {_kind(value)}", path, None)
            if t.fixed and len(value) != t.size:
                raise EncodeError(f"needs exactly {t.size} elements, not {len(value)}", path, None)
            if not t.fixed:
                if len(value) > t.size:
                    raise EncodeError(
                        f"{len(value)} elements exceed the bound {t.size}", path, None
                    )
                out += struct.pack(">I", len(value))
            for i, item in enumerate(value):
                self.encode(t.element, item, f"{path}[{i}]", out, depth)
            return
        if isinstance(t, m.Struct):
            i = 0
            where = path
            visited: set[int] = set()  # of a linked list's nodes (a cycle never ends)
            while True:
                for f in t.fields:
                    try:
                        item = getattr(value, f.py)
                    except AttributeError:
                        raise EncodeError(
                            f"struct {t.name} needs attribute {f.py!r}; got {_kind(value)}",
                            where,
                            None,
                        ) from None
                    if t.linked and f is t.fields[-1]:
                        break  # the next node: in this loop, not by recursion
                    self.encode(f.type, item, f"{where}.{f.name}", out, depth)
                if not t.linked:
                    return
                if item is None:
                    out += b"\0\0\0\0"
                    return
                visited.add(id(value))
                if id(item) in visited:
                    raise EncodeError(
                        f"the list is cyclic: node {i + 1} is an earlier node",
                        f"{path}.{t.fields[-1].name}[{i + 1}]",
                        None,
                    )
                out += b"\0\0\0\1"
                value = item
                i += 1
                where = f"{path}.{t.fields[-1].name}[{i}]"
        self.encode_union(t, value, path, out, depth)

    def encode_bytes(self, t: m.String | m.Opaque, data: Any, path: str, out: bytearray) -> None:
        n = len(data)
        if isinstance(t, m.Opaque) and t.fixed:
            if n != t.size:
                raise EncodeError(f"needs exactly {t.size} bytes, not {n}", path, None)
        else:
            if n > t.size:
                raise EncodeError(f"length {n} exceeds the bound {t.size}", path, None)
            out += struct.pack(">I", n)
        out += data
        out += _ZEROS[-n & 3]

    def encode_union(self, t: m.Union_, value: Any, path: str, out: bytearray, depth: int) -> None:
        dtype = t.discriminant_type
        assert dtype is not None
        dpath = f"{path}.{t.discriminant}"
        try:
            disc = getattr(value, t.discriminant_py)
        except AttributeError:
            raise EncodeError(
                f"union {t.name} needs attribute {t.discriminant_py!r}; got {_kind(value)}",
                path,
                None,
            ) from None
        arm = None
        for candidate in t.arms:
            if any(disc == label for label in candidate.labels):
                arm = candidate
                break
        if arm is None:
            arm = t.default
        self.encode(dtype, disc, dpath, out, depth)
        if arm is None:
            raise EncodeError(
                f"discriminant {disc!r} selects no arm of union {t.name}", dpath, None
            )
        if arm.type is not None:
            try:
                item = value.value
            except AttributeError:
                raise EncodeError(f"union {t.name} needs attribute 'value'", path, None) from None
            self.encode(arm.type, item, f"{path}.{arm.name}", out, depth)


def _kind(value: object) -> str:
    return type(value).__name__


__all__ = ["Interpreter", "is_bytes"]
