"""What the engine knows of RPC programs: procedures, body codecs, stream declarations.

A procedure declares a data stream in the comment just before its declaration in the ``.x``
file (spec.md §6)::

    /* Upload an image.
     * @stream: upload v2
     * @sparse
     */
    xs_restore_ret XS_PROC_RESTORE_V2(xs_restore_args) = 6;

:func:`programs_from_schema` turns a schema compiled by :mod:`xdrstream.codec` into
:class:`Program` objects; :class:`Program`/:class:`Procedure` can also be built by hand.
A body codec is anything with ``pack(value) -> bytes`` and ``unpack(data) -> value``;
``None`` stands for ``void``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class PayloadCodec(Protocol):
    """What the engine needs of a body codec (a generated class or an xdrstream.codec.Codec)."""

    def pack(self, value: Any, /) -> bytes: ...

    def unpack(self, data: bytes | memoryview, /) -> Any: ...


class Variant(enum.Enum):
    """Streaming variant (spec.md §7)."""

    V1 = "v1"  # call per chunk (§7.2)
    V2 = "v2"  # stream messages after the reply, libvirt's (§7.3)
    V3 = "v3"  # stream messages before the reply (§7.4)


class Direction(enum.Enum):
    """Which way the stream's data flows (spec.md §6)."""

    UPLOAD = "upload"  # client -> server (e.g. restore)
    DOWNLOAD = "download"  # server -> client (e.g. save)


@dataclass(frozen=True, slots=True)
class StreamMode:
    """A procedure's stream (§6).  ``sparse``: its calls may carry holes (§7.1.3);
    ``sparse_if``, when given, narrows that to the calls whose arguments it accepts (libvirt:
    the call's ``flags`` ask for holes, its gendispatch.pl's ``args->flags & @sparseflag``).
    The rule is I/O-free, must not raise, and sees what the engine sees of the arguments
    (the decoded value or, for a raw-bodied procedure, the payload bytes)."""

    variant: Variant
    direction: Direction
    sparse: bool = False
    sparse_if: Callable[[Any], bool] | None = field(default=None, compare=False)

    def sparse_for(self, args: Any) -> bool:
        """Whether the call with ``args`` may carry holes (§7.1.3)."""
        return self.sparse and (self.sparse_if is None or self.sparse_if(args))


@dataclass(frozen=True, slots=True)
class Procedure:
    """``arg_max``: the largest valid argument payload in bytes (None: unbounded or
    unknown); a server refuses a CALL announcing more from its header (spec.md §3.6)."""

    number: int
    name: str = ""
    arg: PayloadCodec | None = None
    result: PayloadCodec | None = None
    stream: StreamMode | None = None
    arg_max: int | None = None


def arg_bound(codec: Any) -> int | None:
    """Largest valid payload for a body codec: 0 for void (None), the type's
    :meth:`~xdrstream.codec.Schema.max_size` for a codec compiled by :mod:`xdrstream.codec`
    (it names its schema and type), None when unknown."""
    if codec is None:
        return 0
    schema = getattr(codec, "__xdr_schema__", None)
    name = getattr(codec, "__xdr_name__", None)
    if schema is None or not isinstance(name, str):
        return None
    try:
        size: int | None = schema.max_size(name)
        return size
    except (KeyError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class Program:
    number: int
    version: int
    procedures: Mapping[int, Procedure] = field(default_factory=dict)
    name: str = ""


class AnnotationError(ValueError):
    """An ``@stream``/``@sparse`` annotation that does not follow spec.md §6."""


def stream_mode(annotations: Mapping[str, str], where: str = "procedure") -> StreamMode | None:
    """The :class:`StreamMode` declared by a procedure's annotations (spec.md §6)."""
    spec = annotations.get("stream")
    sparse = "sparse" in annotations
    if spec is None:
        if sparse:
            raise AnnotationError(f"§6: {where}: @sparse without @stream")
        return None
    words = spec.split()
    directions = {d.value: d for d in Direction}
    variants = {v.value: v for v in Variant}
    if len(words) != 2 or words[0] not in directions or words[1] not in variants:
        raise AnnotationError(
            f"§6: {where}: @stream must be '<upload|download> <v1|v2|v3>', got {spec!r}"
        )
    if annotations.get("sparse", "").strip():
        raise AnnotationError(f"§6: {where}: @sparse takes no value")
    return StreamMode(variants[words[1]], directions[words[0]], sparse)


def programs_from_schema(schema: Any) -> list[Program]:
    """One :class:`Program` per (program, version) of a compiled schema."""
    out: list[Program] = []
    for prog_name, prog in schema.programs.items():
        for vers_number, vers in prog.versions.items():
            procs: dict[int, Procedure] = {}
            for number, proc in vers.procedures.items():
                mode = stream_mode(proc.annotations, f"{prog_name}.{proc.name}")
                procs[int(number)] = Procedure(
                    int(number), proc.name, proc.arg, proc.result, mode, arg_bound(proc.arg)
                )
            out.append(Program(int(prog.number), int(vers_number), procs, str(prog_name)))
    return out


class Registry:
    """Programs a connection understands, indexed by (program, version)."""

    def __init__(self, programs: Iterable[Program] = ()) -> None:
        self._programs: dict[tuple[int, int], Program] = {}
        for program in programs:
            self.add(program)

    @classmethod
    def of(cls, programs: Iterable[Any] | Registry) -> Registry:
        """A registry from what a connection accepts: a :class:`Registry` (returned as is)
        or an iterable of :class:`Program` objects, registries and schemas compiled by
        :mod:`xdrstream.codec`."""
        if isinstance(programs, Registry):
            return programs
        registry = cls()
        for item in programs:
            if isinstance(item, Program):
                registry.add(item)
            elif isinstance(item, Registry):
                for program in item:
                    registry.add(program)
            elif hasattr(item, "programs"):  # a schema compiled by xdrstream.codec
                for program in programs_from_schema(item):
                    registry.add(program)
            else:
                raise TypeError(f"programs: expected schemas or Program objects, got {item!r}")
        return registry

    def add(self, program: Program) -> None:
        self._programs[(program.number, program.version)] = program

    def lookup(self, prog: int, vers: int, proc: int) -> Procedure | None:
        program = self._programs.get((prog, vers))
        return None if program is None else program.procedures.get(proc)

    def __iter__(self) -> Iterator[Program]:
        return iter(self._programs.values())
