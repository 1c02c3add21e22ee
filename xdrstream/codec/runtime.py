"""Runtime support for generated codec modules: the Schema object and the wrappers.

Generated modules import this (``from xdrstream.codec import runtime``) and end with
``SCHEMA = runtime.build_schema(globals())``.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
import reprlib
import struct
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from xdrstream.codec import ast
from xdrstream.codec import model as m
from xdrstream.codec.errors import DecodeError, EncodeError
from xdrstream.codec.interp import Interpreter, is_bytes

__all__ = [
    "Codec",
    "Invalid",
    "Schema",
    "StructCache",
    "TooDeep",
    "build_schema",
    "dataclass_fields",
    "dataclass_methods",
    "is_bytes",
    "linked_eq",
    "linked_repr",
]


class Invalid(Exception):
    """Raised by generated code for invalid input; never escapes the wrappers."""


class TooDeep(Invalid):
    """Raised by generated code when recursive types nest deeper than MAX_DEPTH."""


class StructCache(dict[int, struct.Struct]):
    """``cache[n]`` is ``struct.Struct(">{n}{code}")`` (an array of n scalars); big n uncached."""

    def __init__(self, code: str):
        super().__init__()
        self.code = code

    def __missing__(self, n: int) -> struct.Struct:
        compiled = struct.Struct(f">{n}{self.code}")
        if n <= 1024:
            self[n] = compiled
        return compiled


def linked_eq(head: list[str], link: str) -> Callable[[Any, Any], Any]:
    """``__eq__`` of a linked-list struct class: compares node by node in a loop."""

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self, other
        while a is not None and b is not None:
            if a is b:
                return True
            if a.__class__ is not b.__class__:
                return False
            if any(getattr(a, f) != getattr(b, f) for f in head):
                return False
            a, b = getattr(a, link), getattr(b, link)
        return a is b

    return __eq__


def linked_repr(head: list[str], link: str) -> Callable[[Any], str]:
    """``__repr__`` of a linked-list struct class, built in a loop."""

    def __repr__(self: Any) -> str:
        parts: list[str] = []
        node, depth = self, 0
        while node is not None and depth < 1000:
            fields = "".join(f"{f}={getattr(node, f)!r}, " for f in head)
            parts.append(f"{type(node).__name__}({fields}{link}=")
            node = getattr(node, link)
            depth += 1
        tail = "None" if node is None else "..."
        return "".join(parts) + tail + ")" * depth

    return __repr__


def dataclass_methods(
    names: tuple[str, ...],
) -> tuple[Callable[[Any, Any], Any], Callable[[Any], str]]:
    """``__eq__`` and ``__repr__`` as ``@dataclass`` writes them for fields ``names``:
    equal when of the same class with equal field tuples; ``name(field=value!r, ...)``,
    and ``...`` where a value contains itself."""
    # always a tuple, as @dataclass compares: one field's attrgetter returns the bare value,
    # and a NaN field would then make a value unequal to itself
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        get: Callable[[Any], Any] = lambda value: (one(value),)  # noqa: E731
    else:
        get = operator.attrgetter(*names) if names else (lambda value: ())

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return get(self) == get(other)
        return NotImplemented

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __eq__, __repr__


@dataclasses.dataclass
class _Probe:
    required: Any
    optional: Any = None


_FIELDS: dict[tuple[str, bool], dataclasses.Field[Any]] = {}


def dataclass_fields(cls: type, defaults: int) -> None:
    """Make a generated value class one for :mod:`dataclasses` (``fields``, ``replace``,
    ``asdict``, ``is_dataclass``): its ``__slots__`` become its fields, the last
    ``defaults`` of them defaulting to None. Field objects are copies of a real dataclass's,
    shared between classes (they hold nothing else than name and default)."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    fields: dict[str, dataclasses.Field[Any]] = {}
    for i, name in enumerate(names):
        optional = i >= len(names) - defaults
        field = _FIELDS.get((name, optional))
        if field is None:
            field = copy.copy(dataclasses.fields(_Probe)[optional])
            field.name = name
            field.type = Any
            _FIELDS[name, optional] = field
        fields[name] = field
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    cls.__dataclass_params__ = _Probe.__dataclass_params__  # type: ignore[attr-defined]


PackFn = Callable[..., None]
UnpackFn = Callable[..., tuple[Any, int]]


def _view(data: Any) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


class Codec:
    """Encoder/decoder for one type: ``pack``, ``unpack`` and ``unpack_from``.

    ``unpack(data, zero_copy=False)`` decodes the whole buffer. With ``zero_copy=True``
    every ``opaque`` value is a ``memoryview`` slice of ``data`` instead of a ``bytes``
    copy (keep ``data`` alive and unchanged while you use them).
    ``unpack_from(buf, offset=0, zero_copy=False)`` returns ``(value, end_offset)``.
    ``schema``/``name`` (also as ``__xdr_schema__``/``__xdr_name__``, like the generated
    classes) lead back to the :class:`Schema` and the type's ``.x`` name.
    """

    pack: Callable[[Any], bytes]
    unpack: Callable[..., Any]
    unpack_from: Callable[..., tuple[Any, int]]

    def __init__(
        self,
        schema: Schema,
        name: str,
        pack_fn: PackFn,
        unpack_fn: UnpackFn,
        encode_fn: Callable[[Any], bytes] | None = None,
        decode_fn: Callable[[Any], Any] | None = None,
    ):
        self.name = name
        self.schema = schema
        self.pack, self.unpack, self.unpack_from = _wrappers(schema, name, pack_fn, unpack_fn)
        if encode_fn is not None and decode_fn is not None:
            self.pack, self.unpack = _direct(schema, name, encode_fn, decode_fn, self.unpack)

    @property
    def __xdr_schema__(self) -> Schema:
        return self.schema

    @property
    def __xdr_name__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<xdrstream codec {self.name}>"


_join = b"".join


def _wrappers(
    schema: Schema, name: str, pack_fn: PackFn, unpack_fn: UnpackFn
) -> tuple[Callable[[Any], bytes], Callable[..., Any], Callable[..., tuple[Any, int]]]:
    # Closures, not methods: one call and no attribute lookups between the user and the
    # generated function.
    def pack(value: Any) -> bytes:
        out: list[Any] = []  # the pieces (bytes-like), joined once
        try:
            pack_fn(value, out)
        except Exception as exc:
            raise schema.encode_error(name, value, exc) from None
        return _join(out)

    def unpack(data: Any, zero_copy: bool = False) -> Any:
        buf: Any
        if zero_copy:
            buf = _view(data)
        elif data.__class__ is bytes:
            buf = data
        else:
            buf = bytes(_view(data))
        try:
            value, end = unpack_fn(buf, 0)
        except Exception as exc:
            raise schema.decode_error(name, buf, 0, exc) from None
        if end != len(buf):
            raise DecodeError(f"{len(buf) - end} trailing bytes after the encoded value", name, end)
        return value

    def unpack_from(buf: Any, offset: int = 0, zero_copy: bool = False) -> tuple[Any, int]:
        # (``buf`` is Any: it becomes a memoryview or bytes here.)
        if zero_copy:
            buf = _view(buf)
        elif buf.__class__ is not bytes:
            buf = bytes(_view(buf))
        if not 0 <= offset <= len(buf):
            raise DecodeError(f"offset outside the buffer of {len(buf)} bytes", name, offset)
        try:
            return unpack_fn(buf, offset)
        except Exception as exc:
            raise schema.decode_error(name, buf, offset, exc) from None

    pack.__qualname__ = pack.__name__ = f"pack_{name}"
    unpack.__qualname__ = unpack.__name__ = f"unpack_{name}"
    unpack_from.__qualname__ = unpack_from.__name__ = f"unpack_from_{name}"
    return pack, unpack, unpack_from


def _direct(
    schema: Schema,
    name: str,
    encode_fn: Callable[[Any], bytes],
    decode_fn: Callable[[Any], Any],
    unpack_wrapper: Callable[..., Any],
) -> tuple[Callable[[Any], bytes], Callable[..., Any]]:
    """``pack`` and ``unpack`` of a fixed-layout struct through its generated ``b_<type>``
    (returns the bytes) and ``d_<type>`` (decodes exactly its size): no bytearray, no
    offsets. Input ``d_`` refuses goes to the general ``unpack`` for its exact error."""

    def pack(value: Any) -> bytes:
        try:
            return encode_fn(value)
        except Exception as exc:
            raise schema.encode_error(name, value, exc) from None

    def unpack(data: Any, zero_copy: bool = False) -> Any:
        if data.__class__ is bytes and not zero_copy:  # zero_copy: opaques as views
            try:
                return decode_fn(data)
            except Exception:
                pass
        return unpack_wrapper(data, zero_copy)

    pack.__qualname__ = pack.__name__ = f"pack_{name}"
    unpack.__qualname__ = unpack.__name__ = f"unpack_{name}"
    return pack, unpack


BUILTIN_NAMES = tuple(m.BUILTINS)


class Schema(Mapping[str, Any]):
    """A compiled ``.x`` file.

    ``schema[name]`` is the generated class of a struct/union/enum (with ``pack``,
    ``unpack``, ``unpack_from`` classmethod-like attributes, and ``__xdr_schema__``/
    ``__xdr_name__`` leading back here) or a :class:`Codec` for other typedefs.
    ``schema.codec(name)`` returns the :class:`Codec` of any type name,
    including the built-in ones (``int``, ``unsigned hyper``, ``string``, ``opaque``...).
    """

    def __init__(self, namespace: dict[str, Any], model: m.Model | None = None):
        self._ns = namespace
        self._model = model
        # Facts the generator wrote into the module (older modules: from the model), so that
        # loading a schema does not parse and resolve it again; ``model`` is built on demand.
        self.filename: str = namespace.get("_FILENAME") or self.model.filename
        shadowed = namespace.get("_DEFINED_BUILTINS")
        if shadowed is None:
            shadowed = [n for n in BUILTIN_NAMES if n in self.model.types]
        self._codecs: dict[str, Codec] = {}
        self._types: dict[str, Any] = {}
        # (class, pack, unpack[, encode]): fixed-layout structs have an encode returning bytes.
        table: dict[str, tuple[Any, ...]] = namespace["_TYPES"]
        for name, (cls, pack_fn, unpack_fn, *encode) in table.items():
            codec = Codec(self, name, pack_fn, unpack_fn, *encode)
            self._codecs[name] = codec
            if name in BUILTIN_NAMES and name not in shadowed:
                continue
            if cls is not None and cls.__name__ != name:
                self._types[name] = cls  # a typedef naming a struct/union/enum: its class
            elif cls is not None:
                cls.pack = staticmethod(codec.pack)
                cls.unpack = staticmethod(codec.unpack)
                cls.unpack_from = staticmethod(codec.unpack_from)
                cls.__xdr_schema__ = self
                cls.__xdr_name__ = name
                self._types[name] = cls
            else:
                self._types[name] = codec
        constants = namespace.get("_ALL_CONSTANTS")
        if constants is None:
            constants = dict(self.model.constants)
        self.constants: Mapping[str, int | str] = types.MappingProxyType(constants)
        facts = namespace.get("_PROGRAMS")
        if facts is None:
            facts = m.program_facts(self.model)
        self.programs: Mapping[str, ast.SchemaProgram] = types.MappingProxyType(
            self._programs(facts)
        )

    @property
    def model(self) -> m.Model:
        """The resolved schema (rebuilt from the module's ``.x`` text on first use)."""
        if self._model is None:
            ns = self._ns
            self._model = m.build_model(ns["_SOURCES"], ns["_CONSTANTS"], **ns["_OPTIONS"])
        return self._model

    # -- Mapping ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"<xdrstream Schema {self.filename} ({len(self)} types)>"

    def codec(self, name: str) -> Codec:
        """The codec of a defined type or of a built-in type name (KeyError if neither)."""
        return self._codecs[name]

    @property
    def max_depth(self) -> int:
        return int(self._ns["MAX_DEPTH"])

    @property
    def source(self) -> str:
        """The generated Python source of this schema."""
        source = self._ns.get("__xdr_source__")
        if source is None:
            from xdrstream.codec.codegen import generate

            source = generate(
                self.model, self._ns["_SOURCES"], self.max_depth, self._ns["_CONSTANTS"]
            )
            self._ns["__xdr_source__"] = source
        return str(source)

    # -- errors ----------------------------------------------------------------------------

    def max_size(self, name: str) -> int | None:
        """Largest encoding of type ``name`` in bytes, None when unbounded (the engine's
        bound on a call's arguments, §3.6). From the table the generated module carries, so
        a cached schema answers without rebuilding its model (start-up)."""
        sizes = self._ns.get("_MAX_SIZES")
        if sizes is not None and name in sizes:
            size: int | None = sizes[name]
            return size
        return m.max_size(self.xtype(name))

    def xtype(self, name: str) -> m.XType:
        if name in self.model.types:
            return self.model.types[name]
        return m.BUILTINS[name]

    def interpreter(self) -> Interpreter:
        classes = {id(t): self._ns[f"C_{t.ident}"] for t in self.model.compounds}
        model = self.model
        return Interpreter(
            classes, self.max_depth, model.min_size, model.strict_enums, model.lenient
        )

    def decode_error(self, name: str, buf: Any, offset: int, exc: Exception) -> DecodeError:
        """Explain why the generated decoder rejected ``buf`` (or passed on ``exc``)."""
        if isinstance(exc, DecodeError):
            return exc
        try:
            self.interpreter().decode(self.xtype(name), buf, offset, name)
        except DecodeError as err:
            return err
        except RecursionError:
            return DecodeError("nesting too deep for the Python stack", name, offset)
        except Exception:  # never let the diagnosis replace the error being explained
            pass
        reason = "nesting too deep" if isinstance(exc, (TooDeep, RecursionError)) else "invalid"
        return DecodeError(f"{reason} ({type(exc).__name__}: {exc})", name, offset)

    def encode_error(self, name: str, value: Any, exc: Exception) -> EncodeError:
        if isinstance(exc, EncodeError):
            return exc
        try:
            self.interpreter().encode(self.xtype(name), value, name, bytearray())
        except EncodeError as err:
            return err
        except RecursionError:
            return EncodeError("nesting too deep for the Python stack", name, None)
        except Exception:  # e.g. a property of the value raising: report the first failure
            pass
        reason = "nesting too deep" if isinstance(exc, (TooDeep, RecursionError)) else "invalid"
        return EncodeError(f"{reason} ({type(exc).__name__}: {exc})", name, None)

    # -- programs --------------------------------------------------------------------------

    def _ref(self, ref: tuple[str, str] | None) -> tuple[str | None, Any]:
        if ref is None:
            return None, None
        kind, name = ref
        return name, (self._types[name] if kind == "type" else self._codecs[name])

    def _programs(self, facts: m.ProgramFacts) -> dict[str, ast.SchemaProgram]:
        programs: dict[str, ast.SchemaProgram] = {}
        for prog_name, prog_number, versions_facts in facts:
            versions: dict[int, ast.SchemaVersion] = {}
            for ver_name, ver_number, procedure_facts in versions_facts:
                procs: dict[int, ast.SchemaProcedure] = {}
                for name, number, arg_ref, result_ref, notes in procedure_facts:
                    arg_type, arg = self._ref(arg_ref)
                    result_type, result = self._ref(result_ref)
                    procs[number] = ast.SchemaProcedure(
                        name,
                        number,
                        arg_type,
                        result_type,
                        types.MappingProxyType(dict(notes)),
                        arg,
                        result,
                    )
                versions[ver_number] = ast.SchemaVersion(
                    ver_name, ver_number, types.MappingProxyType(procs)
                )
            programs[prog_name] = ast.SchemaProgram(
                prog_name, prog_number, types.MappingProxyType(versions)
            )
        return programs


def build_schema(namespace: dict[str, Any]) -> Schema:
    """Called at the end of a generated module with its ``globals()``."""
    # A module written by ``xdrstream compile`` or loaded from the cache has no model: the
    # Schema rebuilds it from the module's .x text when it is first needed.
    return Schema(namespace, namespace.get("__xdr_model__"))
