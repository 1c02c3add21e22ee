"""Resolved type model: names bound, constants evaluated, sizes checked.

The code generator and the (slow, exact) diagnosing interpreter both work on this model.
Typedefs are transparent here: a reference to a typedef name is the typedef's target type
object, so struct/union/enum objects are shared and may form cycles (``node *next``).
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace

from xdrstream.codec import ast
from xdrstream.codec.errors import SchemaError

UINT_MAX = 0xFFFFFFFF
INF = float("inf")

# Attribute names of generated classes that .x identifiers must not shadow.
_RESERVED = frozenset({"pack", "unpack", "unpack_from"})
_ENUM_RESERVED = _RESERVED | {"name", "value", "mro"}


def py_name(name: str, reserved: frozenset[str] = _RESERVED) -> str:
    """The Python attribute name for a ``.x`` identifier.

    Keywords and ``pack``/``unpack``/``unpack_from`` get a trailing underscore
    (``class`` -> ``class_``); names starting with an underscore get an ``x`` prefix
    (``__init__`` -> ``x__init__``) so they are never private, mangled or special.
    """
    if name.startswith("_"):
        name = "x" + name
    # Soft keywords (match, case, type...) are valid identifiers and stay as they are.
    if keyword.iskeyword(name) or name in reserved:
        name += "_"
    return name


@dataclass(eq=False)
class Prim:
    kind: str  # int | uint | hyper | uhyper | float | double
    fmt: str  # struct format character
    size: int
    xname: str  # .x spelling
    lo: int = 0
    hi: int = 0

    @property
    def narrow(self) -> bool:
        """A C integer type narrower than its XDR word (char, short): the codecs check its
        range both ways; lenient decoding wraps it instead (:meth:`wrap_expr`)."""
        return (self.kind == "int" and self.lo > -(2**31)) or (
            self.kind == "uint" and self.hi < 2**32 - 1
        )

    def wrap_expr(self, var: str) -> str:
        """Python expression of the C cast libtirpc's decoders apply to the word in ``var``
        (``xdr_char``: ``*cp = i``; ``xdr_short``: ``*sp = (short) l``): the low bits, as
        two's complement for signed types."""
        if self.kind == "uint":
            return f"({var} & {self.hi})"
        return f"((({var} + {-self.lo}) & {self.hi - self.lo}) - {-self.lo})"

    def wrap(self, n: int) -> int:
        return (
            n & self.hi if self.kind == "uint" else ((n - self.lo) & (self.hi - self.lo)) + self.lo
        )


PRIMS: dict[str, Prim] = {
    "int": Prim("int", "i", 4, "int", -(2**31), 2**31 - 1),
    "unsigned int": Prim("uint", "I", 4, "unsigned int", 0, 2**32 - 1),
    "hyper": Prim("hyper", "q", 8, "hyper", -(2**63), 2**63 - 1),
    "unsigned hyper": Prim("uhyper", "Q", 8, "unsigned hyper", 0, 2**64 - 1),
    "float": Prim("float", "f", 4, "float"),
    "double": Prim("double", "d", 8, "double"),
    # rpcgen's C integer types (rpc_parse.c get_type): each is one 4-byte XDR word, as
    # libtirpc's xdr_char/xdr_u_char/xdr_short/xdr_u_short/xdr_long/xdr_u_long encode it,
    # holding a value in the C type's range (long: the 32 bits xdr_long puts on the wire).
    "char": Prim("int", "i", 4, "char", -(2**7), 2**7 - 1),
    "unsigned char": Prim("uint", "I", 4, "unsigned char", 0, 2**8 - 1),
    "short": Prim("int", "i", 4, "short", -(2**15), 2**15 - 1),
    "unsigned short": Prim("uint", "I", 4, "unsigned short", 0, 2**16 - 1),
    "long": Prim("int", "i", 4, "long", -(2**31), 2**31 - 1),
    "unsigned long": Prim("uint", "I", 4, "unsigned long", 0, 2**32 - 1),
}


@dataclass(eq=False)
class Bool:
    xname: str = "bool"


BOOL = Bool()


@dataclass(eq=False)
class Enum:
    name: str  # display name (.x name or ``outer.field`` for inline types)
    ident: str  # unique Python identifier suffix for generated globals
    members: dict[str, int] = field(default_factory=dict)  # .x member name -> value
    py_members: list[tuple[str, int]] = field(default_factory=list)


@dataclass(eq=False)
class Opaque:
    fixed: bool
    size: int  # fixed length, or the bound of a variable-length opaque


@dataclass(eq=False)
class String:
    size: int  # bound


@dataclass(eq=False)
class Array:
    element: XType
    fixed: bool
    size: int


@dataclass(eq=False)
class Optional:
    element: XType


@dataclass(eq=False)
class Field:
    name: str  # .x name
    py: str  # attribute name
    type: XType


@dataclass(eq=False)
class Struct:
    name: str
    ident: str
    fields: list[Field] = field(default_factory=list)
    recursive: bool = False
    # A linked list (RFC 4506 section 4.19): the last field is an optional of this struct
    # itself (``entry *next``). Coded iteratively: a list is as long as its input allows.
    linked: bool = False


@dataclass(eq=False)
class Arm:
    labels: list[int]  # empty for default
    name: str | None  # .x name of the arm declaration, None for void
    type: XType | None  # None for void


@dataclass(eq=False)
class Union_:
    name: str
    ident: str
    discriminant: str = ""  # .x name
    discriminant_py: str = ""
    discriminant_type: XType | None = None  # Prim int/uint, Enum or Bool
    arms: list[Arm] = field(default_factory=list)
    default: Arm | None = None
    recursive: bool = False


XType = Prim | Bool | Enum | Opaque | String | Array | Optional | Struct | Union_


@dataclass(eq=False)
class Model:
    filename: str
    types: dict[str, XType]  # every named definition (typedef/struct/union/enum) + inline ones
    constants: dict[str, int | str]  # str: rpcgen's string constants
    compounds: list[Struct | Union_ | Enum]  # objects needing generated classes, in order
    typedefs: dict[str, XType]  # typedef names whose target is not a class type
    programs: list[ast.ProgramDef]
    proc_types: dict[int, XType | None] = field(default_factory=dict)  # id(TypeSpec) -> type
    min_size: dict[int, float] = field(default_factory=dict)  # id(type) -> minimum bytes
    strict_enums: bool = True  # False: undeclared enum values decode as plain ints
    rpc_constants: bool = False  # RPC_CONSTANTS were available
    lenient: bool = False  # libtirpc-compatible decoding (xdrstream.codec's docs)


def type_label(t: XType) -> str:
    """Short .x-like description used in error messages."""
    if isinstance(t, Prim):
        return t.xname
    if isinstance(t, Bool):
        return "bool"
    if isinstance(t, (Enum, Struct, Union_)):
        kind = {Enum: "enum", Struct: "struct", Union_: "union"}[type(t)]
        return f"{kind} {t.name}"
    if isinstance(t, Opaque):
        return f"opaque[{t.size}]" if t.fixed else f"opaque<{t.size}>"
    if isinstance(t, String):
        return f"string<{t.size}>"
    if isinstance(t, Array):
        inner = type_label(t.element)
        return f"{inner}[{t.size}]" if t.fixed else f"{inner}<{t.size}>"
    return f"{type_label(t.element)} *"


# libtirpc's own XDR routines that rpcgen's output calls for these names (issue 17): built
# in, used only where a schema refers to a name it does not define itself. Each is written
# as the .x that has its routine's wire encoding (libtirpc xdr.c, xdr_sizeof; RFC 5531
# section 8.2 for authsys_parms; MAX_NETOBJ_SZ 1024 for netobj; xdr_des_block is 8 opaque
# bytes; xdr_netbuf is maxlen, then opaque<maxlen>: the .x cannot bound buf by maxlen, so
# that one check of libtirpc's is not made, the encoding of every valid value is the same).
LIBTIRPC_FILE = "<libtirpc built-in>"
LIBTIRPC_X = """
typedef unsigned int uint32_t;
typedef unsigned int u_int32_t;
typedef unsigned int u_int;
typedef int int32_t;
typedef unsigned hyper uint64_t;
typedef unsigned hyper u_int64_t;
typedef unsigned hyper u_quad_t;
typedef hyper int64_t;
typedef hyper quad_t;
typedef unsigned char u_char;
typedef unsigned short u_short;
typedef unsigned long u_long;
typedef char int8_t;
typedef unsigned char uint8_t;
typedef unsigned char u_int8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef unsigned short u_int16_t;
typedef unsigned int rpcprog_t;
typedef unsigned int rpcvers_t;
typedef unsigned int rpcproc_t;
typedef unsigned int rpcprot_t;
typedef unsigned int rpcport_t;
typedef opaque netobj<1024>;
typedef opaque des_block[8];
struct netbuf {
    unsigned int maxlen;
    opaque buf<>;
};
struct authsys_parms {
    unsigned int stamp;
    string machinename<255>;
    unsigned int uid;
    unsigned int gid;
    unsigned int gids<16>;
};
"""


# The types a schema may name without defining them (a definition of its own shadows one).
BUILTINS: dict[str, XType] = {
    "int": PRIMS["int"],
    "unsigned int": PRIMS["unsigned int"],
    "hyper": PRIMS["hyper"],
    "unsigned hyper": PRIMS["unsigned hyper"],
    "float": PRIMS["float"],
    "double": PRIMS["double"],
    "char": PRIMS["char"],
    "unsigned char": PRIMS["unsigned char"],
    "short": PRIMS["short"],
    "unsigned short": PRIMS["unsigned short"],
    "long": PRIMS["long"],
    "unsigned long": PRIMS["unsigned long"],
    "bool": BOOL,
    "string": String(UINT_MAX),
    "opaque": Opaque(False, UINT_MAX),
}

# Constants of libtirpc's <rpc/*.h> headers (auth.h, auth_unix.h, rpcsec_gss.h, xdr.h,
# rpc_msg.h, pmap_prot.h) that .x files use as if they were their own (NFS-Ganesha's nfsv41.x,
# libnfs's libnfs_nfs4.x): opt-in, ``rpc_constants=True`` / ``--rpc-constants``. A definition
# in the schema itself wins over these.
RPC_CONSTANTS: Mapping[str, int] = {
    "AUTH_NONE": 0,
    "AUTH_NULL": 0,
    "AUTH_SYS": 1,
    "AUTH_UNIX": 1,
    "AUTH_SHORT": 2,
    "AUTH_DH": 3,
    "AUTH_DES": 3,
    "AUTH_KERB": 4,
    "RPCSEC_GSS": 6,
    "RPCSEC_GSS_VERSION": 1,
    "MAX_MACHINE_NAME": 255,
    "NGRPS": 16,
    "MAX_NETOBJ_SZ": 1024,
    "RPC_MSG_VERSION": 2,
    "PMAPPORT": 111,
    "PMAPPROG": 100000,
    "PMAPVERS": 2,
}


def _libtirpc_definitions() -> dict[str, ast.TypeDef]:
    from xdrstream.codec.parser import parse  # the parser imports nothing of the model

    global _LIBTIRPC
    if _LIBTIRPC is None:
        spec = parse(LIBTIRPC_X, LIBTIRPC_FILE)
        _LIBTIRPC = {d.name: d for d in spec.definitions if isinstance(d, ast.TypeDef)}
    return _LIBTIRPC


_LIBTIRPC: dict[str, ast.TypeDef] | None = None


def where(pos: ast.Pos) -> str:
    return f"{pos.filename}:{pos.line}:{pos.col}"


def references(node: object, out: list[tuple[str, str, ast.Pos]]) -> None:
    """Append ``(kind, name, pos)`` for every constant (``"constant"``) and type (``"type"``)
    name that ``node`` uses, in the order of the syntax tree."""
    if isinstance(node, ast.Value):
        if node.name is not None:
            out.append(("constant", node.name, node.pos))
    elif isinstance(node, ast.NamedSpec):
        out.append(("type", node.name, node.pos))
    elif isinstance(node, (tuple, list)):
        for item in node:
            references(item, out)
    elif is_dataclass(node) and not isinstance(node, (type, ast.Pos)):
        for f in fields(node):
            references(getattr(node, f.name), out)


def shape(node: object) -> object:
    """A syntax tree node without its positions: equal for identical definitions."""
    if isinstance(node, ast.Pos):
        return None
    if isinstance(node, tuple):
        return tuple(shape(item) for item in node)
    if is_dataclass(node) and not isinstance(node, type):
        parts = [shape(getattr(node, f.name)) for f in fields(node) if f.name != "pos"]
        return (type(node).__name__, *parts)
    return node


def same_wire(a: XType, b: XType, seen: set[tuple[int, int]] | None = None) -> bool:
    """Whether two types have the same XDR encoding (names aside)."""
    if a is b:
        return True
    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, Prim):
        assert isinstance(b, Prim)
        return (a.fmt, a.lo, a.hi) == (b.fmt, b.lo, b.hi)
    if isinstance(a, Opaque):
        assert isinstance(b, Opaque)
        return (a.fixed, a.size) == (b.fixed, b.size)
    if isinstance(a, Array):
        assert isinstance(b, Array)
        return (a.fixed, a.size) == (b.fixed, b.size) and same_wire(a.element, b.element, seen)
    if isinstance(a, String):
        assert isinstance(b, String)
        return a.size == b.size
    if isinstance(a, Optional):
        assert isinstance(b, Optional)
        return same_wire(a.element, b.element, seen)
    if isinstance(a, Enum):
        assert isinstance(b, Enum)
        return sorted(a.members.values()) == sorted(b.members.values())
    if isinstance(a, Struct):
        assert isinstance(b, Struct)
        return len(a.fields) == len(b.fields) and all(
            same_wire(x.type, y.type, seen) for x, y in zip(a.fields, b.fields, strict=True)
        )
    return isinstance(a, Bool)


ConstValue = int | str


class Resolver:
    def __init__(
        self,
        spec: ast.Specification,
        constants: Mapping[str, ConstValue] | None = None,
        fallback: Mapping[str, ConstValue] | None = None,
    ):
        self.spec = spec
        self.filename = spec.filename
        self.external: dict[str, ConstValue] = dict(constants or {})
        # Used only where neither the schema nor ``constants`` defines the name.
        self.fallback: dict[str, ConstValue] = dict(fallback or {})
        self.constants: dict[str, ConstValue] = {}
        self.const_defs: dict[str, ast.ConstDef] = {}
        self.type_defs: dict[str, ast.TypeDef] = {}
        self.definitions: list[ast.Definition] = []  # accepted ones (identical repeats dropped)
        self.types: dict[str, XType] = {}
        self.resolving: set[str] = set()
        self.compounds: list[Struct | Union_ | Enum] = []
        self.typedefs: dict[str, XType] = {}
        self.idents: set[str] = set()
        self.const_resolving: set[str] = set()
        self.pending: list[tuple[XType, ast.TypeSpec]] = []
        self.enum_names: dict[str, tuple[str, ast.Pos]] = {}  # member -> (owner type, pos)

    def error(self, message: str, pos: ast.Pos) -> SchemaError:
        return SchemaError(message, pos.filename, pos.line, pos.col)

    def unique_ident(self, base: str) -> str:
        ident = base.replace(".", "__")
        n = 1
        while ident in self.idents:
            n += 1
            ident = f"{base.replace('.', '__')}_{n}"
        self.idents.add(ident)
        return ident

    # -- constants ---------------------------------------------------------------------------

    def declare(self, d: ast.ConstDef | ast.TypeDef) -> bool:
        """Record a definition; False for an identical repeat (accepted, as a C compiler
        accepts rpcgen's output for it); a different one is an error naming both places."""
        previous = self.const_defs.get(d.name) or self.type_defs.get(d.name)
        if previous is None:
            return True
        if type(previous) is type(d) and shape(previous) == shape(d):
            return False
        kind = "constant" if isinstance(previous, ast.ConstDef) else "type"
        raise self.error(
            f"{d.name!r} is already defined differently (as a {kind} at {where(previous.pos)})",
            d.pos,
        )

    def run(self) -> Model:
        programs: list[ast.ProgramDef] = []
        tag_typedefs: list[ast.TypeDef] = []
        # Pass 1: collect names so forward references work.
        for d in self.spec.definitions:
            if isinstance(d, ast.ConstDef):
                if self.declare(d):
                    self.const_defs[d.name] = d
                    self.definitions.append(d)
            elif isinstance(d, ast.TypeDef):
                if isinstance(d.type, ast.NamedSpec) and d.type.name == d.name:
                    tag_typedefs.append(d)  # ``typedef struct X X;``: C's idiom, nothing new
                elif self.declare(d):
                    self.type_defs[d.name] = d
                    self.definitions.append(d)
            else:
                programs.append(d)
                self.definitions.append(d)
        for d in tag_typedefs:
            if d.name not in self.type_defs:
                raise self.error(
                    f"typedef {d.name!r} names itself, and no {d.name!r} is defined", d.pos
                )
        self.add_builtins(programs)
        self.collect_enum_members()
        self.check_undefined_names(programs)
        # Pass 2: resolve every named type.
        for name in self.type_defs:
            self.resolve_named(name, self.type_defs[name].pos)
        model = Model(
            self.filename, self.types, self.constants, self.compounds, self.typedefs, programs
        )
        self.resolve_programs(model)
        # Pass 3: fill struct/union bodies (may refer to any type, including themselves).
        self.fill_pending()
        self.check_builtin_redefinitions()  # (struct bodies are filled by now)
        for name in self.const_defs:
            self.const_value(name, self.const_defs[name].pos)
        self.check_external_constants()
        compute_min_sizes(model, self)
        mark_recursive(model)
        mark_linked(model)
        return model

    def add_builtins(self, programs: list[ast.ProgramDef]) -> None:
        """Add the libtirpc names the schema uses without defining them."""
        builtins = _libtirpc_definitions()
        used: set[str] = set()
        for d in self.definitions:
            if isinstance(d, ast.TypeDef):
                named_types(d.type, used)
            elif isinstance(d, ast.ProgramDef):
                for ver in d.versions:
                    for proc in ver.procedures:
                        for spec in (*proc.args, proc.result):
                            named_types(spec, used)
        for name in sorted(used):
            if name in builtins and name not in self.type_defs and name not in self.const_defs:
                self.type_defs[name] = builtins[name]
                self.definitions.append(builtins[name])

    def check_builtin_redefinitions(self) -> None:
        """A schema may define a libtirpc name again (RFC 7531's ``typedef unsigned int
        uint32_t;``), but only with the encoding libtirpc's routine has."""
        builtins = _libtirpc_definitions()
        for name, d in self.type_defs.items():
            if name not in builtins or d is builtins[name]:
                continue
            reference = Resolver(ast.Specification(LIBTIRPC_FILE, (builtins[name],))).run()
            expected = reference.types[name]
            if not same_wire(self.types[name], expected):
                raise self.error(
                    f"{name!r} is libtirpc's type (xdr_{name}: {type_label(expected)}); "
                    f"this definition ({type_label(self.types[name])}) encodes differently",
                    d.pos,
                )

    def check_external_constants(self) -> None:
        for name, given in self.external.items():
            if name in self.const_defs or name in self.enum_names:
                value = self.const_value(name, ast.Pos(self.filename, 0, 0))
                if value != given:
                    d = self.const_defs.get(name)
                    pos = d.pos if d is not None else self.enum_names[name][1]
                    raise self.error(
                        f"{name!r} is {value!r} here but given as {given!r} (constants= / -D)",
                        pos,
                    )

    def fill_pending(self) -> None:
        while self.pending:
            target, spec = self.pending.pop(0)
            self.fill(target, spec)

    def collect_enum_members(self) -> None:
        """Enum members are constants visible everywhere; find them (also inline) up front."""

        def walk(spec: ast.TypeSpec | None, owner: str) -> None:
            if spec is None:
                return
            if isinstance(spec, ast.EnumSpec):
                for member, _value, pos in spec.members:
                    if member in self.enum_names or member in self.const_defs:
                        raise self.error(f"{member!r} is already defined", pos)
                    if member in self.type_defs:
                        raise self.error(f"{member!r} is already defined as a type", pos)
                    self.enum_names[member] = (owner, pos)
            elif isinstance(spec, ast.StructSpec):
                for f in spec.fields:
                    walk(f.type, owner)
            elif isinstance(spec, ast.UnionSpec):
                walk(spec.discriminant.type, owner)
                for arm in (*spec.arms, spec.default):
                    if arm is not None and arm.declaration is not None:
                        walk(arm.declaration.type, owner)
            elif isinstance(spec, (ast.ArraySpec, ast.OptionalSpec)):
                walk(spec.element, owner)

        for d in self.definitions:
            if isinstance(d, ast.TypeDef):
                walk(d.type, d.name)

    def check_undefined_names(self, programs: list[ast.ProgramDef]) -> None:
        """Two or more names used and defined nowhere are reported together, each at its
        first use (one is left to resolution, whose message says more about it)."""
        used: list[tuple[str, str, ast.Pos]] = []
        references(self.definitions, used)
        known = {*self.const_defs, *self.enum_names, *self.external, *self.fallback}
        known |= {"TRUE", "FALSE", *self.type_defs}  # a kind mix-up has its own error
        for prog in programs:  # program, version and procedure names are constants too
            known.add(prog.name)
            for ver in prog.versions:
                known |= {ver.name, *(proc.name for proc in ver.procedures)}
        missing: dict[str, tuple[str, ast.Pos]] = {}
        for kind, name, pos in used:
            if name not in known and not (kind == "type" and name in self.const_defs):
                missing.setdefault(name, (kind, pos))
        if len(missing) < 2:
            return
        lines = [
            f"{where(pos)}: undefined {kind} {name!r}" for name, (kind, pos) in missing.items()
        ]
        constants = [n for n, (kind, _) in missing.items() if kind == "constant"]
        rpc = [n for n in constants if n in RPC_CONSTANTS]
        constants = [n for n in constants if n not in RPC_CONSTANTS]
        hints = []
        if rpc:
            hints.append(
                f"{', '.join(rpc)}: libtirpc's <rpc/*.h> constants, which rpc_constants=True "
                "(xdrstream compile --rpc-constants) provides"
            )
        if constants:
            hints.append(
                "constants from a C header (as rpcgen's cpp would take them) are given as "
                f"xdrstream compile {' '.join(f'-D {n}=...' for n in constants)} or "
                "compile_schema(..., constants={...})"
            )
        if len(constants) + len(rpc) < len(missing):
            hints.append(
                "a type must be defined in the schema, or compiled together with the file "
                "that defines it (rpcgen would leave its xdr_ routine to a C library)"
            )
        name, (kind, _) = next(iter(missing.items()))
        first = f"undefined {kind} {name!r}"  # self.error names its place
        rest = "\n".join([*lines[1:], f"{len(missing)} undefined names: {'; '.join(hints)}"])
        raise self.error(f"{first}\n{rest}", next(iter(missing.values()))[1])

    def value(self, v: ast.Value) -> int:
        if v.number is not None:
            return v.number
        if v.text is not None:
            raise self.error("a string is not allowed here; a number is needed", v.pos)
        assert v.name is not None
        value = self.const_value(v.name, v.pos)
        if isinstance(value, str):
            raise self.error(f"constant {v.name!r} is a string, not a number", v.pos)
        return value

    def const_value(self, name: str, pos: ast.Pos) -> ConstValue:
        if name in self.constants:
            return self.constants[name]
        if name in self.const_defs:
            if name in self.const_resolving:
                raise self.error(f"constant {name!r} is defined in terms of itself", pos)
            self.const_resolving.add(name)
            d = self.const_defs[name]
            value: ConstValue
            if d.value.text is not None:
                value = d.value.text
            elif d.value.name is not None:
                value = self.const_value(d.value.name, d.value.pos)
            else:
                value = self.value(d.value)
            self.const_resolving.discard(name)
            self.constants[name] = value
            return value
        if name in self.enum_names:
            # Members are known once their enum is resolved: do that now (forward reference).
            self.resolve_named(self.enum_names[name][0], pos)
            if name not in self.constants:
                self.fill_pending()
            if name not in self.constants:
                raise self.error(f"enum member {name!r} is defined in terms of itself", pos)
            return self.constants[name]
        for given in (self.external, self.fallback):
            if name in given:
                self.constants[name] = given[name]
                return given[name]
        if name in ("TRUE", "FALSE"):
            return 1 if name == "TRUE" else 0
        if name in self.type_defs:
            raise self.error(f"{name!r} is a type, not a constant", pos)
        if name in RPC_CONSTANTS and not self.fallback:
            raise self.error(
                f"undefined constant {name!r}: it is one of libtirpc's <rpc/*.h> constants, "
                "which rpc_constants=True (xdrstream compile --rpc-constants) provides",
                pos,
            )
        raise self.error(
            f"undefined constant {name!r} (if it comes from a C header, as rpcgen's cpp would "
            f"take it, give it: compile_schema(..., constants={{{name!r}: ...}}) or "
            f"xdrstream compile -D {name}=...)",
            pos,
        )

    def size(self, v: ast.Value | None, what: str) -> int:
        if v is None:
            return UINT_MAX
        n = self.value(v)
        if not 0 <= n <= UINT_MAX:
            raise self.error(f"{what} {n} is outside 0..{UINT_MAX}", v.pos)
        return n

    # -- types -------------------------------------------------------------------------------

    def resolve_named(self, name: str, pos: ast.Pos) -> XType:
        if name in self.types:
            return self.types[name]
        d = self.type_defs.get(name)
        if d is None:
            if name in self.const_defs or name in self.enum_names:
                raise self.error(f"{name!r} is a constant, not a type", pos)
            raise self.error(
                f"undefined type {name!r}: rpcgen would emit a call to xdr_{name}() and leave "
                f"that routine to a C library or hand-written code; define {name!r} in the "
                "schema (e.g. a typedef), or compile it together with the file that defines it",
                pos,
            )
        if name in self.resolving:
            raise self.error(
                f"typedef {name!r} refers to itself without a struct or union in between", pos
            )
        self.resolving.add(name)
        t = self.resolve(d.type, name)
        self.resolving.discard(name)
        if isinstance(t, (Prim, Bool)):
            # Built-in scalars are shared objects: a typedef gets its own, so that what is
            # keyed by type object (fuzz overrides) tells ``typedef int small_t`` from int.
            t = replace(t)
        self.types[name] = t
        if not isinstance(t, (Struct, Union_, Enum)):
            self.typedefs[name] = t
        return t

    def resolve(self, spec: ast.TypeSpec, owner: str) -> XType:
        """Resolve a type specifier; ``owner`` names inline struct/union/enum types."""
        if isinstance(spec, ast.PrimSpec):
            if spec.name == "bool":
                return BOOL
            if spec.name == "void":
                raise self.error(
                    "'void' is only allowed as a union arm or procedure type", spec.pos
                )
            return PRIMS[spec.name]
        if isinstance(spec, ast.NamedSpec):
            if spec.name in ("TRUE", "FALSE"):
                raise self.error(f"{spec.name!r} is a constant, not a type", spec.pos)
            return self.resolve_named(spec.name, spec.pos)
        if isinstance(spec, ast.OpaqueSpec):
            if spec.fixed:
                return Opaque(True, self.size(spec.size, "opaque length"))
            return Opaque(False, self.size(spec.size, "opaque bound"))
        if isinstance(spec, ast.StringSpec):
            return String(self.size(spec.size, "string bound"))
        if isinstance(spec, ast.ArraySpec):
            element = self.resolve(spec.element, owner)
            if spec.fixed:
                return Array(element, True, self.size(spec.size, "array length"))
            return Array(element, False, self.size(spec.size, "array bound"))
        if isinstance(spec, ast.OptionalSpec):
            return Optional(self.resolve(spec.element, owner))
        if isinstance(spec, ast.EnumSpec):
            enum = Enum(owner, self.unique_ident(owner))
            self.compounds.append(enum)
            self.types.setdefault(owner, enum)
            self.fill_enum(enum, spec)
            return enum
        if isinstance(spec, ast.StructSpec):
            struct = Struct(owner, self.unique_ident(owner))
            self.compounds.append(struct)
            self.types.setdefault(owner, struct)
            self.pending.append((struct, spec))
            return struct
        union = Union_(owner, self.unique_ident(owner))
        self.compounds.append(union)
        self.types.setdefault(owner, union)
        self.pending.append((union, spec))
        return union

    def fill_enum(self, enum: Enum, spec: ast.EnumSpec) -> None:
        if enum.members or not spec.members:
            return
        previous = -1
        seen_py: set[str] = set()
        members: dict[str, int] = {}
        for member, value, pos in spec.members:
            if value.number is None and value.name is None:
                n = previous + 1
            elif value.name == member:
                raise self.error(f"enum member {member!r} is defined in terms of itself", pos)
            else:
                n = self.value(value)
            if not -(2**31) <= n <= 2**31 - 1:
                raise self.error(f"enum value {n} of {member!r} is outside the int range", pos)
            members[member] = n
            self.constants[member] = n
            py = py_name(member, _ENUM_RESERVED)
            if py in seen_py:
                raise self.error(f"enum member {member!r} clashes with another after renaming", pos)
            seen_py.add(py)
            enum.py_members.append((py, n))
            previous = n
        enum.members = members

    def declaration_type(self, decl: ast.Declaration, owner: str) -> XType:
        return self.resolve(decl.type, f"{owner}.{decl.name}")

    def fill(self, target: XType, spec: ast.TypeSpec) -> None:
        if isinstance(target, Struct):
            assert isinstance(spec, ast.StructSpec)
            seen: dict[str, str] = {}
            for decl in spec.fields:
                py = py_name(decl.name)
                if decl.name in seen:
                    raise self.error(
                        f"duplicate member {decl.name!r} in struct {target.name}", decl.pos
                    )
                if py in seen.values():
                    raise self.error(
                        f"member {decl.name!r} clashes with another after renaming to {py!r}",
                        decl.pos,
                    )
                seen[decl.name] = py
                target.fields.append(Field(decl.name, py, self.declaration_type(decl, target.name)))
            return
        assert isinstance(target, Union_) and isinstance(spec, ast.UnionSpec)
        disc = spec.discriminant
        dtype = self.declaration_type(disc, target.name)
        if not (
            isinstance(dtype, (Enum, Bool))
            or (isinstance(dtype, Prim) and dtype.kind in ("int", "uint"))
        ):
            raise self.error(
                "union discriminant must be int, unsigned int, an enum or bool, "
                f"not {type_label(dtype)}",
                disc.pos,
            )
        target.discriminant = disc.name
        target.discriminant_py = py_name(disc.name, _RESERVED | {"value"})
        target.discriminant_type = dtype
        seen_labels: set[int] = set()
        for arm in spec.arms:
            labels: list[int] = []
            for label in arm.labels:
                n = self.value(label)
                if isinstance(dtype, Enum) and n not in dtype.members.values():
                    raise self.error(f"case {n} is not a member of enum {dtype.name}", label.pos)
                if isinstance(dtype, Bool) and n not in (0, 1):
                    raise self.error(f"case {n} is not a bool value (TRUE or FALSE)", label.pos)
                if isinstance(dtype, Prim) and not dtype.lo <= n <= dtype.hi:
                    raise self.error(f"case {n} is outside the range of {dtype.xname}", label.pos)
                if n in seen_labels:
                    raise self.error(f"duplicate case {n}", label.pos)
                seen_labels.add(n)
                labels.append(n)
            target.arms.append(self.arm(arm, labels, target.name))
        if spec.default is not None:
            target.default = self.arm(spec.default, [], target.name)

    def arm(self, arm: ast.UnionArm, labels: list[int], owner: str) -> Arm:
        if arm.declaration is None:
            return Arm(labels, None, None)
        return Arm(labels, arm.declaration.name, self.declaration_type(arm.declaration, owner))

    # -- programs ----------------------------------------------------------------------------

    def resolve_programs(self, model: Model) -> None:
        seen_programs: set[int] = set()
        for prog in model.programs:
            for name, pos in [(prog.name, prog.pos)]:
                self.define_constant(name, self.value(prog.number), pos)
            number = self.value(prog.number)
            if number in seen_programs:
                raise self.error(f"duplicate program number {number}", prog.number.pos)
            seen_programs.add(number)
            seen_versions: set[int] = set()
            for ver in prog.versions:
                vnum = self.value(ver.number)
                self.define_constant(ver.name, vnum, ver.pos)
                if vnum in seen_versions:
                    raise self.error(f"duplicate version number {vnum}", ver.number.pos)
                seen_versions.add(vnum)
                seen_procs: set[int] = set()
                for proc in ver.procedures:
                    pnum = self.value(proc.number)
                    if not 0 <= pnum <= UINT_MAX:
                        raise self.error(
                            f"procedure number {pnum} is out of range", proc.number.pos
                        )
                    if pnum in seen_procs:
                        raise self.error(f"duplicate procedure number {pnum}", proc.number.pos)
                    seen_procs.add(pnum)
                    self.define_constant(proc.name, pnum, proc.pos)
                    if len(proc.args) > 1:
                        raise self.error(
                            f"procedure {proc.name} takes {len(proc.args)} arguments; only one "
                            "(a struct) is supported",
                            proc.pos,
                        )
                    for spec in (*proc.args, proc.result):
                        if spec is not None:
                            model.proc_types[id(spec)] = self.resolve(spec, proc.name)
            if not 0 <= number <= UINT_MAX:
                raise self.error(f"program number {number} is out of range", prog.number.pos)

    def define_constant(self, name: str, value: int, pos: ast.Pos) -> None:
        if name in self.constants and self.constants[name] != value:
            raise self.error(f"{name!r} is already defined with another value", pos)
        if name in self.type_defs:
            raise self.error(f"{name!r} is already defined as a type", pos)
        self.constants[name] = value


def children(t: XType) -> Iterator[XType]:
    if isinstance(t, (Array, Optional)):
        yield t.element
    elif isinstance(t, Struct):
        for f in t.fields:
            yield f.type
    elif isinstance(t, Union_):
        for arm in (*t.arms, t.default):
            if arm is not None and arm.type is not None:
                yield arm.type


def all_types(model: Model) -> list[XType]:
    seen: dict[int, XType] = {}
    stack = list(model.types.values()) + [t for t in model.proc_types.values() if t is not None]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen[id(t)] = t
        stack.extend(children(t))
    return list(seen.values())


def compute_min_sizes(model: Model, resolver: Resolver) -> None:
    """Smallest encoding of each type (fixpoint, so recursion terminates); reject types
    that have no finite encoding at all (``struct a { a x; }``)."""
    types = all_types(model)
    size: dict[int, float] = {id(t): INF for t in types}

    def of(t: XType) -> float:
        if isinstance(t, Prim):
            return t.size
        if isinstance(t, (Bool, Enum)):
            return 4
        if isinstance(t, Opaque):
            return (t.size + 3) // 4 * 4 if t.fixed else 4
        if isinstance(t, String):
            return 4
        if isinstance(t, Optional):
            return 4
        if isinstance(t, Array):
            return t.size * size[id(t.element)] if t.fixed and t.size else (0 if t.fixed else 4)
        if isinstance(t, Struct):
            return sum(size[id(f.type)] for f in t.fields)
        arms = [a for a in (*t.arms, t.default) if a is not None]
        return 4 + min((size[id(a.type)] if a.type is not None else 0) for a in arms)

    changed = True
    while changed:
        changed = False
        for t in types:
            n = of(t)
            if n < size[id(t)]:
                size[id(t)] = n
                changed = True
    for t in types:
        if size[id(t)] == INF and isinstance(t, (Struct, Union_)):
            top = resolver.type_defs.get(t.name.split(".")[0])
            pos = top.pos if top is not None else ast.Pos(model.filename, 0, 0)
            raise resolver.error(f"type {t.name!r} has no finite encoding", pos)
    model.min_size = size


def mark_recursive(model: Model) -> None:
    """Mark structs/unions that can contain themselves (through any path)."""
    compounds = [t for t in all_types(model) if isinstance(t, (Struct, Union_))]
    for c in compounds:
        stack = list(children(c))
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t is c:
                c.recursive = True
                break
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.extend(children(t))


def named_types(spec: ast.TypeSpec | None, out: set[str]) -> None:
    """Add the type names that ``spec`` refers to."""
    if isinstance(spec, ast.NamedSpec):
        out.add(spec.name)
    elif isinstance(spec, (ast.ArraySpec, ast.OptionalSpec)):
        named_types(spec.element, out)
    elif isinstance(spec, ast.StructSpec):
        for f in spec.fields:
            named_types(f.type, out)
    elif isinstance(spec, ast.UnionSpec):
        named_types(spec.discriminant.type, out)
        for arm in (*spec.arms, spec.default):
            if arm is not None and arm.declaration is not None:
                named_types(arm.declaration.type, out)


def mark_linked(model: Model) -> None:
    for t in model.compounds:
        if isinstance(t, Struct) and t.fields:
            last = t.fields[-1].type
            t.linked = isinstance(last, Optional) and last.element is t


def resolve(spec: ast.Specification, constants: Mapping[str, int | str] | None = None) -> Model:
    return Resolver(spec, constants).run()


def build_model(
    sources: Sequence[tuple[str, str]],
    constants: Mapping[str, int | str] | None = None,
    *,
    rpc_constants: bool = False,
    strict_enums: bool = True,
    lenient: bool = False,
) -> Model:
    """Parse (filename, text) pairs, already preprocessed, as one schema, in order."""
    from xdrstream.codec.parser import parse

    definitions: list[ast.Definition] = []
    for filename, text in sources:
        definitions.extend(parse(text, filename).definitions)
    name = " + ".join(filename for filename, _ in sources) or "<schema>"
    spec = ast.Specification(name, tuple(definitions))
    fallback = RPC_CONSTANTS if rpc_constants else None
    model = Resolver(spec, constants, fallback).run()
    model.strict_enums = strict_enums and not lenient
    model.lenient = lenient
    model.rpc_constants = rpc_constants
    return model


# (name, number, ((version, number, ((procedure, number, arg, result, annotations), ...)),
# ...)) per program; arg/result ("type" or "codec", name) or None for void.
SpecRef = tuple[str, str] | None
ProcedureFacts = tuple[tuple[str, int, SpecRef, SpecRef, tuple[tuple[str, str], ...]], ...]
ProgramFacts = tuple[tuple[str, int, tuple[tuple[str, int, ProcedureFacts], ...]], ...]


def _spec_ref(spec: ast.TypeSpec | None) -> SpecRef:
    if spec is None:
        return None
    if isinstance(spec, ast.NamedSpec):
        return ("type", spec.name)
    if isinstance(spec, ast.PrimSpec):
        return ("codec", spec.name)
    if isinstance(spec, ast.StringSpec):
        return ("codec", "string")
    if isinstance(spec, ast.OpaqueSpec):
        return ("codec", "opaque")
    raise SchemaError(
        "a procedure argument or result must be a type name or a built-in type",
        spec.pos.filename,
        spec.pos.line,
        spec.pos.col,
    )


def program_facts(model: Model) -> ProgramFacts:
    """The programs of ``model`` as plain data (written into generated modules)."""
    # SchemaProgram, version and procedure names are numbers (the resolver checked them).
    consts = {k: v for k, v in model.constants.items() if isinstance(v, int)}
    return tuple(
        (
            prog.name,
            consts[prog.name],
            tuple(
                (
                    ver.name,
                    consts[ver.name],
                    tuple(
                        (
                            proc.name,
                            consts[proc.name],
                            _spec_ref(proc.args[0] if proc.args else None),
                            _spec_ref(proc.result),
                            tuple(proc.annotations),
                        )
                        for proc in ver.procedures
                    ),
                )
                for ver in prog.versions
            ),
        )
        for prog in model.programs
    )


def max_size(t: XType | None, limit: int = 1 << 32) -> int | None:
    """Largest XDR encoding of type ``t`` (None: void, 0), or None when it is unbounded
    or above ``limit`` (a recursive type, an unbounded string, array or opaque)."""
    if t is None:
        return 0
    seen: set[int] = set()

    def of(t: XType) -> int | None:
        if isinstance(t, Prim):
            return t.size
        if isinstance(t, (Bool, Enum)):
            return 4
        if isinstance(t, (Opaque, String)):
            if t.size >= UINT_MAX:
                return None
            padded = (t.size + 3) // 4 * 4
            return padded if isinstance(t, Opaque) and t.fixed else 4 + padded
        if id(t) in seen:  # recursion: a list as long as its input allows
            return None
        seen.add(id(t))
        try:
            if isinstance(t, Optional):
                inner = of(t.element)
                return None if inner is None else 4 + inner
            if isinstance(t, Array):
                if t.size >= UINT_MAX:
                    return None
                inner = of(t.element)
                if inner is None:
                    return None
                return t.size * inner + (0 if t.fixed else 4)
            if isinstance(t, Struct):
                total = 0
                for f in t.fields:
                    size = of(f.type)
                    if size is None or total + size > limit:
                        return None
                    total += size
                return total
            arms = [a for a in (*t.arms, t.default) if a is not None]
            sizes = [0 if a.type is None else of(a.type) for a in arms]
            if any(size is None for size in sizes):
                return None
            return 4 + max((s for s in sizes if s is not None), default=0)
        finally:
            seen.discard(id(t))

    size = of(t)
    return None if size is None or size > limit else size
