"""Syntax tree of a ``.x`` file, and the public program/version/procedure model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Pos:
    filename: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Value:
    """A size, enum value, constant or case label: a literal or a constant name.

    ``text`` holds a string literal (only a ``const`` definition may have one).
    """

    pos: Pos
    number: int | None = None
    name: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class PrimSpec:
    """int, unsigned, hyper, unsigned hyper, bool, float, double, void, or one of rpcgen's C
    integer types: char, short, long and their ``unsigned`` forms."""

    pos: Pos
    name: str  # "int" | "unsigned int" | "hyper" | "unsigned hyper" | "bool" | "char" | ...


@dataclass(frozen=True, slots=True)
class NamedSpec:
    pos: Pos
    name: str


@dataclass(frozen=True, slots=True)
class OpaqueSpec:
    pos: Pos
    fixed: bool
    size: Value | None  # None: opaque<>


@dataclass(frozen=True, slots=True)
class StringSpec:
    pos: Pos
    size: Value | None  # None: string<>


@dataclass(frozen=True, slots=True)
class ArraySpec:
    pos: Pos
    element: TypeSpec
    fixed: bool
    size: Value | None


@dataclass(frozen=True, slots=True)
class OptionalSpec:
    pos: Pos
    element: TypeSpec


@dataclass(frozen=True, slots=True)
class EnumSpec:
    pos: Pos
    members: tuple[tuple[str, Value, Pos], ...]


@dataclass(frozen=True, slots=True)
class Declaration:
    pos: Pos
    name: str
    type: TypeSpec


@dataclass(frozen=True, slots=True)
class StructSpec:
    pos: Pos
    fields: tuple[Declaration, ...]


@dataclass(frozen=True, slots=True)
class UnionArm:
    pos: Pos
    labels: tuple[Value, ...]  # empty for ``default``
    declaration: Declaration | None  # None for void


@dataclass(frozen=True, slots=True)
class UnionSpec:
    pos: Pos
    discriminant: Declaration
    arms: tuple[UnionArm, ...]
    default: UnionArm | None


TypeSpec = (
    PrimSpec
    | NamedSpec
    | OpaqueSpec
    | StringSpec
    | ArraySpec
    | OptionalSpec
    | EnumSpec
    | StructSpec
    | UnionSpec
)


@dataclass(frozen=True, slots=True)
class ConstDef:
    pos: Pos
    name: str
    value: Value


@dataclass(frozen=True, slots=True)
class TypeDef:
    """``typedef``, ``struct``, ``union`` and ``enum`` definitions."""

    pos: Pos
    name: str
    type: TypeSpec


@dataclass(frozen=True, slots=True)
class ProcDef:
    pos: Pos
    name: str
    number: Value
    result: TypeSpec | None  # None: void
    args: tuple[TypeSpec, ...]  # empty: void
    annotations: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class VersionDef:
    pos: Pos
    name: str
    number: Value
    procedures: tuple[ProcDef, ...]


@dataclass(frozen=True, slots=True)
class ProgramDef:
    pos: Pos
    name: str
    number: Value
    versions: tuple[VersionDef, ...]


Definition = ConstDef | TypeDef | ProgramDef


@dataclass(frozen=True, slots=True)
class Specification:
    filename: str
    definitions: tuple[Definition, ...]


# -- public model of RFC 5531 program declarations ------------------------------------------
# A program as the schema declares it, with its codecs. The engine's view of one program
# version (procedures with their stream modes) is xdrstream.protocol.Program, built from it.


@dataclass(frozen=True)
class SchemaProcedure:
    """One procedure of a program version.

    ``arg_type``/``result_type`` are the ``.x`` spelling (``None`` for ``void``); ``arg``
    and ``result`` are the codecs (objects with ``pack``/``unpack``/``unpack_from``) or
    ``None`` for ``void``. ``annotations`` holds the ``@name: value`` lines of the comment
    right before the declaration.
    """

    name: str
    number: int
    arg_type: str | None
    result_type: str | None
    annotations: Mapping[str, str]
    arg: Any = field(default=None, compare=False, repr=False)
    result: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    number: int
    procedures: Mapping[int, SchemaProcedure]


@dataclass(frozen=True)
class SchemaProgram:
    name: str
    number: int
    versions: Mapping[int, SchemaVersion]
