"""libvirt's remote program as data: every procedure's name, number, argument, result and
stream, from libvirt's own ``.x`` files or the built-in subset (spec.md §11.3).

    from xdrstream.libvirt import protocol
    remote = protocol.load("/usr/src/libvirt-9.0.0")        # a libvirt source tree
    remote = protocol.load("remote_protocol.x", constants={"VIR_UUID_BUFLEN": 16, ...})
    remote = protocol.builtin()                              # libvirt_remote.x, the subset
    proc = remote.procedure("DOMAIN_GET_INFO")               # or by number: 16
    proc.number, proc.arg_type, proc.result_type, proc.stream
    args = remote.args("DOMAIN_GET_INFO", dom={"name": "test", "uuid": b"...", "id": 1})

Names are libvirt's ``REMOTE_PROC_*`` without the prefix.  libvirt's ``remote_protocol.x``
declares no ``program`` block: its procedures are the members of ``enum remote_procedure``
and, by libvirt's convention (its ``gendispatch.pl``), ``REMOTE_PROC_FOO_BAR`` takes
``remote_foo_bar_args``, returns ``remote_foo_bar_ret`` and, for an event sent as a MESSAGE,
carries ``remote_foo_bar_msg``; a missing type is ``void``.  The comment before each member
holds libvirt's annotations: ``@readstream`` (data from the daemon: a V2 download),
``@writestream`` (to the daemon: a V2 upload) and ``@sparseflag`` (holes allowed) give the
procedure's stream (spec.md §6); the others (``@generate``, ``@acl``, ``@priority``...)
are kept in ``annotations``.  The built-in ``libvirt_remote.x`` declares a ``program`` with
the same numbers and ``@stream`` annotations (its procedure names carry no prefix).

Constants that libvirt's ``.x`` files take from C headers (``VIR_UUID_BUFLEN``,
``VIR_SECURITY_LABEL_BUFLEN``, ``VIR_TYPED_PARAM_INT``...): given a source tree,
:func:`load` reads them from its ``include/libvirt/*.h`` (and ``libvirt-common.h.in``)
with :func:`header_constants` -- integer ``#define``\\ s and enum members, the only forms
these files use; otherwise pass ``constants=``.  Given values win over the headers'.

libvirt's two other client programs, ``qemu_protocol.x`` (QEMU_PROGRAM: monitor and
agent commands, monitor events) and ``lxc_protocol.x`` (LXC_PROGRAM), use the remote
program's types; given a source tree (or ``src/remote``) that has them, :func:`load`
compiles the three files together and the remote program's :attr:`RemoteProtocol.companions`
holds them by name (``"qemu"``, ``"lxc"``), each a :class:`RemoteProtocol` of its own with
the same conventions (``QEMU_PROC_FOO`` takes ``qemu_foo_args``...).
:meth:`RemoteProtocol.resolve` finds a procedure of any of them by its full name
(``"QEMU_PROC_DOMAIN_MONITOR_COMMAND"``), which is how :class:`~xdrstream.libvirt.LibvirtClient`
calls them.

``lenient=True`` compiles the schema in the codec's libtirpc-compatible mode (what
libvirtd accepts: any non-zero bool or optional-data flag is TRUE, undeclared enum values
decode as ints); the libvirt-facing client and server use it, strict stays the default.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from xdrstream.codec import CodecError
from xdrstream.codec import model as m
from xdrstream.codec.cheaders import c_constants
from xdrstream.protocol import schemas
from xdrstream.protocol.programs import (
    Direction,
    Procedure,
    Program,
    StreamMode,
    Variant,
    arg_bound,
    stream_mode,
)

PREFIX = "REMOTE_PROC_"
#: Where a libvirt source tree keeps the remote program's schema and its C constants.
TREE_SCHEMA = "src/remote/remote_protocol.x"
TREE_HEADERS = "include/libvirt"
#: libvirt's client programs besides the remote one: name -> the ``.x`` file beside
#: remote_protocol.x (compiled after it: they use its types).
COMPANIONS = {"qemu": "qemu_protocol.x", "lxc": "lxc_protocol.x"}

Source = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], "RemoteProtocol"]


class ProtocolLookupError(KeyError):
    """A procedure name or number the loaded remote program does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RemoteProcedure:
    """One procedure of the remote program.  ``arg_type``/``result_type`` are ``.x`` type
    names (None: void); an event (a MESSAGE from the daemon) has its body as ``arg_type``
    (``remote_..._msg``) and ``event`` set."""

    name: str
    number: int
    arg_type: str | None
    result_type: str | None
    stream: StreamMode | None = None
    event: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)


class RemoteProtocol:
    """The remote program of one schema (see the module docstring)."""

    def __init__(
        self,
        schema: Any,
        procedures: Iterable[RemoteProcedure],
        *,
        program: int,
        version: int,
        origin: str,
        prefix: str = PREFIX,
    ) -> None:
        self.schema = schema
        self.program = program
        self.version = version
        self.origin = origin
        self.prefix = prefix
        #: libvirt's other client programs compiled with this one (see the module docstring)
        self.companions: dict[str, RemoteProtocol] = {}
        self.procedures: dict[str, RemoteProcedure] = {}
        self.by_number: dict[int, RemoteProcedure] = {}
        for proc in sorted(procedures, key=lambda p: p.number):
            self.procedures[proc.name] = proc
            self.by_number[proc.number] = proc

    def __repr__(self) -> str:
        return f"<RemoteProtocol {self.origin}: {len(self.procedures)} procedures>"

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return _short(key, self.prefix) in self.procedures
        return key in self.by_number

    def procedure(self, key: str | int) -> RemoteProcedure:
        """The procedure named ``key`` (``"DOMAIN_GET_INFO"``, the ``REMOTE_PROC_`` prefix
        optional, any case) or numbered ``key``."""
        found = (
            self.by_number.get(key)
            if isinstance(key, int)
            else self.procedures.get(_short(key, self.prefix))
        )
        if found is None:
            raise ProtocolLookupError(
                f"the remote program of {self.origin} has no procedure {key!r} "
                f"({len(self.procedures)} procedures known)"
            )
        return found

    def number(self, key: str | int) -> int:
        return self.procedure(key).number

    def resolve(self, key: str | int) -> tuple[RemoteProtocol, RemoteProcedure]:
        """The program and procedure of ``key``: a companion's when ``key`` carries its
        prefix (``"QEMU_PROC_DOMAIN_MONITOR_COMMAND"``), else this program's."""
        if isinstance(key, str):
            for companion in self.companions.values():
                if key.upper().startswith(companion.prefix):
                    return companion, companion.procedure(key)
        return self, self.procedure(key)

    def programs(self) -> list[Program]:
        """Program definitions of this program and its companions, for a registry."""
        return [self.program_definition()] + [
            c.program_definition() for c in self.companions.values()
        ]

    def codec(self, type_name: str | None) -> Any:
        """The codec of a ``.x`` type name (None for void)."""
        return None if type_name is None else self.schema.codec(type_name)

    def args(self, key: str | int, value: Any = None, /, **fields: Any) -> Any:
        """The argument value of procedure ``key``: ``value`` (the generated struct, or any
        object or mapping with its fields), or built from ``fields``.  Nested structs may
        be given the same ways (a mapping, a value from another schema)."""
        return self._value(self.procedure(key).arg_type, key, value, fields)

    def result(self, key: str | int, value: Any = None, /, **fields: Any) -> Any:
        """Like :meth:`args`, for the result of procedure ``key``."""
        return self._value(self.procedure(key).result_type, key, value, fields)

    def build(self, type_name: str, value: Any) -> Any:
        """``value`` as a value of ``.x`` type ``type_name`` of this schema (see args)."""
        return _coerce(self.schema, self.schema.xtype(type_name), value)

    def _value(
        self, type_name: str | None, key: str | int, value: Any, fields: dict[str, Any]
    ) -> Any:
        if type_name is None:
            if value is not None or fields:
                raise TypeError(f"procedure {key!r} takes no arguments (void)")
            return None
        if fields:
            if value is not None:
                raise TypeError("give either a value or keyword fields, not both")
            value = fields
        return self.build(type_name, value)

    def program_definition(self, raw_args: bool = False, raw_results: bool = False) -> Program:
        """The :class:`~xdrstream.protocol.Program` for a connection's registry.
        ``raw_args``: leave arguments undecoded (bytes), for a server that decodes them
        itself and answers a failure as libvirtd does; ``raw_results``: the same for
        results, for a client that judges each reply's bytes itself (the exactness check)."""
        raw = RawBody()
        procs: dict[int, Procedure] = {}
        for proc in self.by_number.values():
            arg = self.codec(proc.arg_type)
            if raw_args and not proc.event:
                arg = raw
            result = raw if raw_results and not proc.event else self.codec(proc.result_type)
            bound = arg_bound(self.codec(proc.arg_type))  # refused beyond it (spec §3.6)
            procs[proc.number] = Procedure(proc.number, proc.name, arg, result, proc.stream, bound)
        return Program(self.program, self.version, procs, f"{self.prefix[:-5]}PROGRAM")


class RawBody:
    """Codec that keeps a body as bytes (the arguments a server decodes itself)."""

    def pack(self, value: Any, /) -> bytes:
        return bytes(value)

    def unpack(self, data: bytes | memoryview, /) -> Any:
        return bytes(data)


def _short(name: str, prefix: str = PREFIX) -> str:
    name = name.upper()
    return name[len(prefix) :] if name.startswith(prefix) else name


# ---------------------------------------------------------------------------- values
def _coerce(schema: Any, t: Any, value: Any) -> Any:
    """``value`` as a value of model type ``t``: generated classes are taken as they are,
    mappings and other objects with the right attributes are rebuilt field by field."""
    if isinstance(t, m.Struct):
        cls = schema[t.name]
        if isinstance(value, cls):
            return value
        get: Callable[[str, str], Any]
        if isinstance(value, Mapping):
            get = lambda name, py: value[name] if name in value else value[py]  # noqa: E731
        else:
            get = lambda name, py: getattr(value, py)  # noqa: E731
        try:
            return cls(**{f.py: _coerce(schema, f.type, get(f.name, f.py)) for f in t.fields})
        except (KeyError, AttributeError) as exc:
            raise TypeError(f"{t.name}: missing field {exc.args[0]!r}") from None
    if isinstance(t, m.Union_):
        cls = schema[t.name]
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            disc, inner = value[t.discriminant], value.get("value")
        else:
            disc, inner = value.discriminant, value.value
        arm = next((a for a in t.arms if int(disc) in a.labels), t.default)
        if arm is not None and arm.type is not None:
            inner = _coerce(schema, arm.type, inner)
        return cls(disc, inner)
    if isinstance(t, m.Optional):
        return None if value is None else _coerce(schema, t.element, value)
    if isinstance(t, m.Array) and isinstance(t.element, (m.Struct, m.Union_, m.Optional, m.Array)):
        return [_coerce(schema, t.element, item) for item in value]
    return value


# ---------------------------------------------------------------------------- loading
@functools.cache
def builtin(lenient: bool = False) -> RemoteProtocol:
    """The built-in subset, ``xdrstream/protocol/schemas/libvirt_remote.x``."""
    schema = _compile([schemas.path("libvirt_remote")], {}, lenient)
    return from_schema(schema, origin="built-in libvirt_remote.x")


def load(
    source: Source | None = None,
    *,
    constants: Mapping[str, int] | None = None,
    lenient: bool = False,
) -> RemoteProtocol:
    """The remote program of ``source``: None (the built-in subset), a
    :class:`RemoteProtocol` (returned as is), a libvirt source tree, a directory holding
    ``remote_protocol.x``, one ``.x`` file or a list of them (compiled together, in order).
    ``constants``: values of the C constants the files use (see the module docstring)."""
    if source is None:
        return builtin(lenient)
    if isinstance(source, RemoteProtocol):
        return source
    files, headers = _files(source)
    given = dict(constants or {})
    values = {**(header_constants(headers) if headers is not None else {}), **given}
    key = (tuple(str(f) for f in files), tuple(sorted(values.items())), lenient)
    return _load_cached(key)


@functools.cache
def _load_cached(key: tuple[tuple[str, ...], tuple[tuple[str, int], ...], bool]) -> RemoteProtocol:
    names, values, lenient = key
    files = [Path(name) for name in names]
    schema = _compile(files, dict(values), lenient)
    texts = [f.read_text(encoding="utf-8") for f in files]
    return from_schema(schema, texts, origin=", ".join(names))


def _files(source: Any) -> tuple[list[Path], Path | None]:
    """The ``.x`` files of ``source`` and the header directory to read constants from."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            if (path / TREE_SCHEMA).is_file():
                return _with_companions(path / TREE_SCHEMA), path / TREE_HEADERS
            if (path / "remote_protocol.x").is_file():
                tree = path.resolve().parent.parent  # DIR = TREE/src/remote
                headers = tree / TREE_HEADERS
                files = _with_companions(path / "remote_protocol.x")
                return files, headers if headers.is_dir() else None
            raise FileNotFoundError(
                f"{path}: neither a libvirt source tree ({TREE_SCHEMA}) nor a directory "
                "with remote_protocol.x"
            )
        return [path], None
    files = [Path(item) for item in source]
    if not files:
        raise ValueError("no .x files given")
    return files, None


def _with_companions(remote: Path) -> list[Path]:
    """remote_protocol.x and, after it, the companion programs' files beside it."""
    return [remote] + [
        remote.parent / f for f in COMPANIONS.values() if (remote.parent / f).is_file()
    ]


def _compile(files: Sequence[Path], constants: Mapping[str, int], lenient: bool) -> Any:
    from xdrstream.codec import load_schema

    options: dict[str, Any] = {}
    if constants:
        options["constants"] = constants
    if lenient:
        options["lenient"] = True  # libtirpc's decoder, strict_enums=False included
    target: Any = files[0] if len(files) == 1 else list(files)
    return load_schema(target, **options)


def from_schema(schema: Any, texts: Sequence[str] = (), origin: str = "<schema>") -> RemoteProtocol:
    """The remote program of a compiled schema: its ``program`` declaration when it has one
    (the built-in subset), else libvirt's ``enum remote_procedure`` with ``texts`` (the
    ``.x`` sources) giving the annotations."""
    for prog in schema.programs.values():
        if int(prog.number) != int(schema.constants.get("REMOTE_PROGRAM", -1)):
            continue
        (vers_number, vers), *_ = prog.versions.items()
        procs = [
            RemoteProcedure(
                _short(p.name),
                int(number),
                p.arg_type,
                p.result_type,
                _per_call(schema, stream_mode(p.annotations, p.name), p.arg_type, p.annotations),
                event=bool(p.result_type is None and p.arg_type and p.arg_type.endswith("_msg")),
                annotations=dict(p.annotations),
            )
            for number, p in vers.procedures.items()
        ]
        return RemoteProtocol(
            schema, procs, program=int(prog.number), version=int(vers_number), origin=origin
        )
    remote = _from_enum(schema, "REMOTE", texts, origin)
    if remote is None:
        raise ValueError(f"{origin}: no program REMOTE_PROGRAM and no enum remote_procedure")
    for name in COMPANIONS:
        companion = _from_enum(schema, name.upper(), texts, origin)
        if companion is not None:
            remote.companions[name] = companion
    return remote


def _from_enum(
    schema: Any, program: str, texts: Sequence[str], origin: str
) -> RemoteProtocol | None:
    """The program ``program`` (``REMOTE``, ``QEMU``, ``LXC``) from its ``enum
    PROGRAM_procedure`` and libvirt's type-name convention; None if the schema lacks it."""
    enum = schema.model.types.get(f"{program.lower()}_procedure")
    if not isinstance(enum, m.Enum) or f"{program}_PROGRAM" not in schema.constants:
        return None
    prefix = f"{program}_PROC_"
    notes = _annotations("\n".join(texts), prefix)
    procs = []
    for member, number in enum.members.items():
        name = _short(member, prefix)
        base = f"{program.lower()}_{name.lower()}"
        msg = f"{base}_msg" if f"{base}_msg" in schema.model.types else None
        arg = f"{base}_args" if f"{base}_args" in schema.model.types else msg
        ret = f"{base}_ret" if f"{base}_ret" in schema.model.types else None
        annotations = notes.get(member, {})
        procs.append(
            RemoteProcedure(
                name,
                int(number),
                arg,
                ret,
                _per_call(schema, _libvirt_stream(annotations), arg, annotations),
                msg is not None,
                annotations,
            )
        )
    return RemoteProtocol(
        schema,
        procs,
        program=int(schema.constants[f"{program}_PROGRAM"]),
        version=int(schema.constants[f"{program}_PROTOCOL_VERSION"]),
        origin=origin,
        prefix=prefix,
    )


_MEMBER = re.compile(r"/\*\*((?:(?!\*/).)*)\*/\s*([A-Z]+_PROC_\w+)\s*=", re.S)
_NOTE = re.compile(r"@(\w+)\s*:?\s*([^\n]*)")


def _annotations(text: str, prefix: str = PREFIX) -> dict[str, dict[str, str]]:
    """libvirt's ``@key: value`` annotations per ``PREFIX`` member (repeated keys, such as
    ``@acl``, joined with ", ")."""
    out: dict[str, dict[str, str]] = {}
    for comment, member in _MEMBER.findall(text):
        if not member.startswith(prefix):
            continue
        notes: dict[str, str] = {}
        for key, value in _NOTE.findall(comment):
            value = value.strip().rstrip("*").strip()
            notes[key] = f"{notes[key]}, {value}" if key in notes else value
        out[member] = notes
    return out


def _libvirt_stream(notes: Mapping[str, str]) -> StreamMode | None:
    """libvirt streams are V2 (spec.md §7.3); the direction is the client's view."""
    if "readstream" in notes:
        return StreamMode(Variant.V2, Direction.DOWNLOAD, "sparseflag" in notes)
    if "writestream" in notes:
        return StreamMode(Variant.V2, Direction.UPLOAD, "sparseflag" in notes)
    return None


def _per_call(
    schema: Any, mode: StreamMode | None, arg_type: str | None, notes: Mapping[str, str]
) -> StreamMode | None:
    """``mode`` sparse per call, as libvirt decides it (spec.md §11.3): a procedure with
    ``@sparseflag: NAME`` allows holes only in the calls whose ``flags`` has NAME's bit."""
    name = notes.get("sparseflag")
    if mode is None or not mode.sparse or not name or arg_type is None:
        return mode
    # a lone .x file loaded without its C headers: libvirt's value, from the built-in subset
    bit = schema.constants.get(name)
    if bit is None:
        bit = schemas.load("libvirt_remote").constants.get(name)
    if bit is None:
        raise ValueError(f"@sparseflag names {name}, a constant neither the schema nor C has")
    return replace(mode, sparse_if=SparseFlag(int(bit), schema.codec(arg_type)))


@dataclass(frozen=True)
class SparseFlag:
    """libvirt's per-call sparseness (gendispatch.pl: ``sparse = args->flags & FLAG``), a
    :attr:`~xdrstream.protocol.StreamMode.sparse_if` rule: the call's ``flags`` has ``bit``.
    It sees decoded arguments (a generated struct, any object or mapping with ``flags``) or,
    from a server that decodes them itself, the payload bytes, read with ``codec``;
    arguments that do not decode ask for nothing (such a call is refused anyway)."""

    bit: int
    codec: Any

    def __call__(self, args: Any) -> bool:
        if isinstance(args, (bytes, bytearray, memoryview)):
            try:
                args = self.codec.unpack(args)
            except CodecError:
                return False
        flags = args.get("flags") if isinstance(args, Mapping) else getattr(args, "flags", None)
        return isinstance(flags, int) and bool(flags & self.bit)


# ---------------------------------------------------------------------------- C headers
def header_constants(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Integer constants of the C headers in ``directory`` (``*.h``, then ``*.h.in``), as
    :func:`xdrstream.codec.cheaders.c_constants` reads them."""
    files = sorted(Path(directory).glob("*.h")) + sorted(Path(directory).glob("*.h.in"))
    return c_constants(path.read_text(encoding="utf-8", errors="replace") for path in files)
