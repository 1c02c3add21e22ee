"""RFC 4506 XDR schema compiler: ``.x`` text -> generated, fast, strict Python codecs.

API::

    from xdrstream.codec import compile_schema, load_schema
    schema = compile_schema(text, filename="<schema>", max_depth=200)   # or load_schema(path)
    schema = load_schema([remote_protocol_x, qemu_protocol_x],   # several files, in order
                         constants={"VIR_UUID_BUFLEN": 16},      # rpcgen's -D
                         include=[dir],                          # the preprocessor's -I
                         rpc_constants=False,                    # libtirpc's <rpc/*.h> names
                         strict_enums=True, lenient=False)       # see "Lenient decoding"
    P = schema["point"]                 # struct/union/enum -> its generated class
    data = P.pack(P(x=1, y=2))          # -> bytes
    P.unpack(data)                      # whole buffer; trailing bytes are a DecodeError
    P.unpack_from(buf, offset)          # -> (value, end_offset)
    schema["name_t"]                    # other typedefs -> a Codec with the same 3 methods
    schema.codec("unsigned hyper")      # codec of any type name, built-ins included
    schema.constants["FOO"]             # every const, enum member, program/version/proc name
    schema.programs["PROG"].versions[1].procedures[3]   # SchemaProgram/-Version/-Procedure
    schema.source                       # the generated Python source
    P.__xdr_schema__, P.__xdr_name__    # back to the Schema and the .x name ("point")

Every generated class and every :class:`Codec` (``schema["name_t"]``, ``schema.codec(n)``)
carries ``__xdr_schema__`` (its :class:`Schema`) and ``__xdr_name__`` (the ``.x`` type name
it was compiled from; for a class reached through ``typedef struct foo bar_t;`` that is
``"foo"``), so generic code (e.g. :mod:`xdrstream.fuzz.strategies`) can find a type's
definition from the class or codec alone.

``unpack``/``unpack_from`` take ``zero_copy=True``: every ``opaque`` value is then a
``memoryview`` slice of the input buffer instead of a ``bytes`` copy.

Values (both directions):

- ``int``/``unsigned int``/``hyper``/``unsigned hyper`` -> ``int`` (range-checked);
  rpcgen's ``char``, ``unsigned char``, ``short``, ``unsigned short``, ``long``, ``unsigned
  long`` -> ``int``, each one 4-byte XDR word (as libtirpc's ``xdr_char`` etc.) whose value
  must be in the C type's range both ways (``char x[4]`` is an array of such words, not
  opaque); libtirpc's names (``uint32_t``, ``u_int``, ``int64_t``, ``u_quad_t``, ``u_char``,
  ``netobj``, ``authsys_parms``...: ``model.LIBTIRPC_X``) are built in where a schema uses
  them without defining them, and a schema may define them again with the same encoding;
  ``float``/``double`` -> ``float``; ``bool`` -> ``bool`` (encode accepts values equal to
  0 or 1); ``quadruple`` is rejected by the compiler.
- ``enum`` -> a generated ``IntEnum``; encode accepts members or ints that are members.
- ``struct`` -> a generated dataclass (``slots=True``) with the ``.x`` field names;
  construct it with keywords: ``P(x=1, y=2)``.
- ``union`` -> a generated dataclass with two attributes: the discriminant, named after its
  ``.x`` declaration (``switch (int kind)`` -> ``.kind``), and ``value``, the selected arm's
  value (``None`` for ``void`` arms; ignored when encoding them). Construct it positionally
  or by keyword: ``U(kind=1, value=5)``. The discriminant is also readable as
  ``.discriminant`` for generic code. Its docstring lists the arms.
- ``T *x`` (optional) -> ``None`` or the value; ``T x[n]``/``T x<n>`` -> ``list`` (encode
  also accepts tuples); ``opaque`` -> ``bytes`` (encode accepts bytes-like objects);
  ``string`` -> ``str`` (UTF-8).
- Types defined inline in a declaration (``struct { ... } field;``) are named
  ``outer.field`` in the schema and in their class ``__name__``.

Identifier renaming: a ``.x`` name that is a Python keyword (not a soft keyword), or one of
``pack``/``unpack``/``unpack_from`` (for enum members also ``name``/``value``/``mro``; for a
union discriminant also ``value``) gets a trailing underscore (``class`` -> ``class_``);
a name starting with ``_`` gets an ``x`` prefix (``__init__`` -> ``x__init__``). Two names
that collide after renaming are a SchemaError. Error paths use the ``.x`` names.

Dialect (rpcgen's): ``const X = "text";`` (a ``str`` in ``schema.constants``); ``typedef
struct X X;``; ``//`` comments; ``namespace NAME { ... }`` (its definitions join the
schema); ``%`` lines ignored; an identical second definition of a type or constant is
accepted, a different one is an error naming both places. A file with preprocessor lines
(``#define``, ``#ifdef``, ``#include``) goes through pcpp (:mod:`xdrstream.codec.cpp`) with
``RPC_HDR`` and ``RPC_XDR`` defined and ``constants`` as macros; errors name the original
file and line.

Lenient decoding (for standing in for libvirtd or talking to libtirpc peers; strict is the
default everywhere). ``strict_enums=False``: an enum word outside the declared members
decodes as a plain ``int`` (members stay enum members) and encoding accepts any int32, so
it re-encodes byte-exactly; an unknown union discriminant still needs a ``default`` arm.
``lenient=True`` is libtirpc's decoder, and includes ``strict_enums=False``:

- a ``bool`` word (also a bool union discriminant), or an optional-data flag
  (``T *x``, linked lists too), that is not 0 is TRUE, as libtirpc's ``xdr_bool`` and
  ``xdr_pointer`` read it (go-libvirt sends CONNECT_OPEN's flag as ``0x01000000``);
  re-encoding writes 1;
- padding bytes of ``opaque`` and ``string`` are not checked (``xdr_opaque`` skips them);
  re-encoding writes zeros;
- a ``string``'s bytes need not be UTF-8 (C's ``char *`` carries any): invalid bytes decode
  as lone surrogates (``surrogateescape``) and re-encode to the same bytes;
- a ``char``/``short`` (signed or not, also a union discriminant) word outside the C type's
  range keeps its low bits (two's complement), as libtirpc's ``xdr_char``/``xdr_short``
  cast it; re-encoding writes the C value.

Everything else stays strict in lenient mode: bounds, truncation, trailing bytes, range of
integers when encoding, union discriminants without an arm.

Errors: :class:`SchemaError` (``file:line:col: reason``) from the compiler;
:class:`DecodeError` and :class:`EncodeError`, both :class:`CodecError` and ``ValueError``,
with ``.path`` (``msg.body.items[3].name``; union arms appear under their ``.x`` arm name)
and ``.offset`` (byte offset into the buffer given to ``unpack``/``unpack_from``; ``None``
for encode errors). Decoding is strict: truncation, trailing bytes, lengths above bounds,
undeclared enum values, bool or optional flags other than 0/1, union discriminants without
an arm, non-zero padding and invalid UTF-8 are all DecodeErrors. Recursive types nest at most
``max_depth`` levels ("nesting too deep"). Arrays whose elements encode to zero bytes are
limited to one element per remaining input byte.

Linked lists (RFC 4506 section 4.19: a struct whose last member is an optional of itself,
``struct entry { ...; entry *next; }``, as in NFS READDIR and rpcbind's lists) keep their
linked Python value (``entry(..., next=entry(..., next=None))``, ``None`` for the empty
list) and are packed and unpacked in a loop: their length is bounded only by the input and
does not count toward ``max_depth`` (a list of 1,000,000 entries round-trips). Their classes'
``==`` and ``repr`` loop too (``repr`` shows the first 1000 nodes). Error paths name node
``i`` after the first as ``entry.next[i]``; a cyclic list is an EncodeError. Other
recursion (trees, a self-optional that is not the last member, mutual recursion through
unions) is true nesting, limited by ``max_depth``.

Generated code: see :mod:`xdrstream.codec.codegen`; ``xdrstream compile X.x -o mod.py``
writes the same source as an importable module whose ``SCHEMA`` is the Schema.
:func:`compile_schema` compiles each generated function at its first call (~0.1 ms each;
Python's ``compile()`` of the whole module was most of a big schema's cost): until then the
function is a stub that becomes the real function in place, so references taken before run
the real code; line numbers and tracebacks are the full source's.

Cache: :func:`compile_schema` keeps each generated module, compiled, in
``$XDG_CACHE_HOME/xdrstream/codec/`` (default ``~/.cache``), keyed by a SHA-256 of the
schema text after preprocessing, the options, the Python bytecode version and the source
of this package (so a changed generator never reuses old code). A process that compiles a
schema compiled before loads its code instead of parsing, generating and compiling it;
the model is rebuilt only when something needs it (error messages, ``schema.model``).
Files are written atomically (a temporary file renamed); at most ``CACHE_ENTRIES`` are kept
(the least recently written go first); an unreadable or unwritable cache is ignored.
Only files owned by the user are loaded. ``XDRSTREAM_NO_CODEC_CACHE=1`` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import linecache
import marshal
import os
import threading
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from xdrstream.codec.cpp import needs_preprocessing, preprocess
from xdrstream.codec.errors import CodecError, DecodeError, EncodeError, SchemaError

if TYPE_CHECKING:  # PEP 692 (typing.Unpack from Python 3.11); annotations are strings here
    from typing_extensions import Unpack

    from xdrstream.codec.ast import SchemaProcedure, SchemaProgram, SchemaVersion
    from xdrstream.codec.model import RPC_CONSTANTS, Model
    from xdrstream.codec.runtime import Codec, Schema

# Start-up: these names are imported at their first use (``from xdrstream.codec import
# Schema`` included), so that a command's `--help` does not load the model and runtime.
_LAZY = {
    "SchemaProcedure": "xdrstream.codec.ast",
    "SchemaProgram": "xdrstream.codec.ast",
    "SchemaVersion": "xdrstream.codec.ast",
    "RPC_CONSTANTS": "xdrstream.codec.model",
    "Model": "xdrstream.codec.model",
    "build_model": "xdrstream.codec.model",
    "Codec": "xdrstream.codec.runtime",
    "Schema": "xdrstream.codec.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "RPC_CONSTANTS",
    "Codec",
    "CodecError",
    "CompileOptions",
    "DecodeError",
    "EncodeError",
    "Schema",
    "SchemaError",
    "SchemaProcedure",
    "SchemaProgram",
    "SchemaVersion",
    "compile_schema",
    "generate_source",
    "load_schema",
]

DEFAULT_MAX_DEPTH = 200
CACHE_ENTRIES = 256  # generated modules kept in the on-disk cache
_CACHE_FORMAT = 3  # (format, key, source, code of the lazy module, function spans)

Constants = Mapping[str, "int | str"]
Sources = Sequence[tuple[str, str]]

_counter = itertools.count(1)
_cache: dict[tuple[object, ...], Schema] = {}
_cache_lock = threading.Lock()


def _prepared(
    text: str | Sources,
    filename: str,
    constants: Constants | None,
    include: Iterable[str | os.PathLike[str]],
) -> list[tuple[str, str]]:
    """(filename, text) pairs, each through the C preprocessor if it has ``#`` lines."""
    sources = [(filename, text)] if isinstance(text, str) else list(text)
    if not sources:
        raise ValueError("no schema text given")
    dirs = [str(d) for d in include]
    return [
        (name, preprocess(body, name, constants, dirs) if needs_preprocessing(body) else body)
        for name, body in sources
    ]


class CompileOptions(TypedDict, total=False):
    """The keyword options of :func:`compile_schema`, :func:`generate_source` and
    :func:`load_schema` (each described in :func:`compile_schema`), written once."""

    constants: Constants | None  # default None
    include: Iterable[str | os.PathLike[str]]  # default ()
    rpc_constants: bool  # default False
    strict_enums: bool  # default True
    lenient: bool  # default False


def _prepare(
    text: str | Sources,
    filename: str,
    max_depth: int,
    *,
    constants: Constants | None = None,
    include: Iterable[str | os.PathLike[str]] = (),
    rpc_constants: bool = False,
    strict_enums: bool = True,
    lenient: bool = False,
) -> tuple[list[tuple[str, str]], dict[str, bool]]:
    """The preprocessed sources and the model options (the defaults of
    :class:`CompileOptions` are these)."""
    if max_depth < 1:
        raise ValueError("max_depth must be at least 1")
    sources = _prepared(text, filename, constants, include)
    return sources, {
        "rpc_constants": rpc_constants,
        "strict_enums": strict_enums,
        "lenient": lenient,
    }


def generate(
    model: Model, sources: Sources, max_depth: int, constants: Constants | None = None
) -> str:
    """:func:`.codegen.generate`, imported only for a schema not in the cache (start-up: a
    cached load runs no code generator)."""
    from xdrstream.codec import codegen

    return codegen.generate(model, sources, max_depth, constants)


def _generate(
    text: str | Sources, filename: str, max_depth: int, **options: Unpack[CompileOptions]
) -> tuple[Model, str]:
    """The model and the generated module source of a schema."""
    sources, model_options = _prepare(text, filename, max_depth, **options)
    constants = options.get("constants")
    from xdrstream.codec.model import build_model

    model = build_model(sources, constants, **model_options)
    return model, generate(model, sources, max_depth, constants)


@functools.cache
def _generator_digest() -> bytes:
    """What generated code depends on besides the schema: this package's source and the
    interpreter's bytecode version."""
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


def _cache_dir() -> Path | None:
    if os.environ.get("XDRSTREAM_NO_CODEC_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xdrstream" / "codec"


Spans = list[tuple[str, int, int]]  # a top-level function: (name, first line, end line)


def _lazy_module(lines: list[str]) -> tuple[str, Spans]:
    """The generated module with each top-level function body left out, and where each
    function is. ``compile()`` is most of a big schema's cost (remote_protocol.x: 0.31 of
    0.5 s, 1678 functions): each function's line becomes ``name = _lazy(i)``, a stub whose
    first call compiles the real function (:func:`_lazy_factory`). The other lines blank
    out, so line numbers are the full source's (tracebacks show it from linecache)."""
    out = list(lines)
    spans: Spans = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("def "):
            # generated bodies are indented and hold no multi-line literals
            j = i + 1
            while j < n and lines[j][:1] in (" ", "\n"):
                j += 1
            out[i] = f"{line[4 : line.index('(')]} = _lazy({len(spans)})\n"
            out[i + 1 : j] = ["\n"] * (j - i - 1)
            spans.append((line[4 : line.index("(")], i, j))
            i = j
        else:
            i += 1
    return "".join(out), spans


def _stub(*args: object, _load: Callable[[], Callable[..., object]], **kwargs: object) -> object:
    """Code of a generated function not compiled yet (its ``_load`` is a keyword default)."""
    return _load()(*args, **kwargs)


def _shifted(code: types.CodeType, lines: int) -> types.CodeType:
    """``code`` compiled from a slice of a module, placed ``lines`` lines further down."""
    consts = tuple(
        _shifted(c, lines) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)


def _lazy_factory(
    namespace: dict[str, object], lines: list[str], spans: Spans, codename: str
) -> Callable[[int], types.FunctionType]:
    """The ``_lazy`` of a module from :func:`_lazy_module`: ``_lazy(i)`` is a stub of
    function ``i`` whose first call compiles the function and gives the stub its code, so
    every reference taken before (the Schema's wrappers, dispatch tables) runs it directly."""
    template = _stub.__code__.replace(co_filename=codename)

    def lazy(index: int) -> types.FunctionType:
        name, start, end = spans[index]
        stub = types.FunctionType(
            template.replace(co_name=name, co_firstlineno=start + 1), namespace, name
        )

        def load() -> types.FunctionType:
            if stub.__kwdefaults__ is not None:  # not loaded yet (or by another thread)
                code = compile("".join(lines[start:end]), codename, "exec", dont_inherit=True)
                exec(_shifted(code, start), namespace)  # defines the real function ...
                real = namespace[name]
                assert isinstance(real, types.FunctionType)
                stub.__code__ = real.__code__
                stub.__defaults__ = real.__defaults__
                stub.__doc__ = real.__doc__
                stub.__kwdefaults__ = None
                namespace[name] = stub  # ... and the stub stays the one function object
            return stub

        stub.__kwdefaults__ = {"_load": load}
        stub.__qualname__ = name
        return stub

    return lazy


def _cache_load(path: Path) -> tuple[str, types.CodeType, Spans] | None:
    try:
        with path.open("rb") as file:
            # Code is run from it: only a file of this user's that no one else may write
            # (XDG_CACHE_HOME may be shared).
            status = os.fstat(file.fileno())
            if status.st_mode & 0o022 or (hasattr(os, "getuid") and status.st_uid != os.getuid()):
                return None
            entry = marshal.loads(file.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (
        isinstance(entry, tuple)
        and len(entry) == 5
        and entry[0] == _CACHE_FORMAT
        and entry[1] == path.stem  # the key it was written for: a renamed entry is not run
        and isinstance(entry[2], str)
        and isinstance(entry[3], types.CodeType)
        and isinstance(entry[4], list)
    ):
        return entry[2], entry[3], entry[4]
    return None


def _cache_store(path: Path, source: str, code: types.CodeType, spans: Spans) -> None:
    """Write atomically (readers see the old file or the new one), then keep the newest
    ``CACHE_ENTRIES``. Best effort: a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # not a ".bin": the bound's count below must not take (or remove) a write in flight
        tmp = path.with_name(f".{path.stem}-{os.getpid()}-{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(marshal.dumps((_CACHE_FORMAT, path.stem, source, code, spans)))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        entries = [e for e in os.scandir(path.parent) if e.name.endswith(".bin")]
        if len(entries) > CACHE_ENTRIES:
            entries.sort(key=lambda e: e.stat().st_mtime_ns)
            for old in entries[: len(entries) - CACHE_ENTRIES]:
                os.unlink(old.path)
    except OSError:
        pass


def generate_source(
    text: str | Sources,
    filename: str = "<schema>",
    max_depth: int = DEFAULT_MAX_DEPTH,
    **options: Unpack[CompileOptions],
) -> str:
    """The Python module source for a ``.x`` text (what ``xdrstream compile`` writes);
    the arguments are :func:`compile_schema`'s."""
    return _generate(text, filename, max_depth, **options)[1]


def compile_schema(
    text: str | Sources,
    filename: str = "<schema>",
    max_depth: int = DEFAULT_MAX_DEPTH,
    **options: Unpack[CompileOptions],
) -> Schema:
    """Compile ``.x`` source text into a :class:`Schema` (SchemaError on bad input).

    ``text`` is one file's text (named ``filename`` in errors) or a sequence of
    ``(filename, text)`` compiled as one schema, in order. Keyword options
    (:class:`CompileOptions`): ``constants`` are names the schema may use (rpcgen's
    ``-D``: also macros for the preprocessor; default none); ``include`` the
    preprocessor's ``-I`` directories; ``rpc_constants=True`` adds :data:`RPC_CONSTANTS`;
    ``strict_enums=False`` and ``lenient=True``: see the module documentation.
    """
    sources, model_options = _prepare(text, filename, max_depth, **options)
    constants = options.get("constants")
    key = hashlib.sha256(_generator_digest())
    key.update(repr((sources, sorted((constants or {}).items()), max_depth)).encode())
    key.update(repr(sorted(model_options.items())).encode())
    digest = key.hexdigest()
    cache = _cache_dir()
    path = cache / f"{digest}.bin" if cache is not None else None
    cached = _cache_load(path) if path is not None else None
    model: Model | None = None
    if cached is not None:
        source, code, spans = cached
    else:
        from xdrstream.codec.model import build_model

        model = build_model(sources, constants, **model_options)
        source = generate(model, sources, max_depth, constants)
    lines = source.splitlines(True)
    label = " + ".join(name for name, _ in sources)  # as the model names the schema
    codename = f"<xdrstream generated {digest[:16]}: {label}>"
    if cached is None:
        lazy_source, spans = _lazy_module(lines)
        code = compile(lazy_source, codename, "exec", dont_inherit=True)
        if path is not None:
            _cache_store(path, source, code, spans)
    # Register the source so tracebacks, pdb and inspect show the generated code.
    linecache.cache[codename] = (len(source), None, lines, codename)
    namespace: dict[str, object] = {
        "__name__": f"xdrstream.codec.generated_{next(_counter)}",
        "__file__": codename,
        "__xdr_model__": model,
        "__xdr_source__": source,
    }
    namespace["_lazy"] = _lazy_factory(namespace, lines, spans, codename)
    exec(code, namespace)
    schema = namespace["SCHEMA"]
    from xdrstream.codec.runtime import Schema

    assert isinstance(schema, Schema)
    return schema


def load_schema(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    max_depth: int = DEFAULT_MAX_DEPTH,
    **options: Unpack[CompileOptions],
) -> Schema:
    """Read and compile one ``.x`` file, or several as one schema in order (as rpcgen
    users include one file's header in another's); the options are
    :func:`compile_schema`'s. Cached by (resolved paths, mtimes, options); files that
    ``#include`` brings in are not part of the key."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    resolved = [Path(p).resolve() for p in paths]
    options = {**options, "include": tuple(str(d) for d in options.get("include", ()))}
    given = {**options, "constants": tuple(sorted((options.get("constants") or {}).items()))}
    key = (
        tuple((str(r), r.stat().st_mtime_ns) for r in resolved),
        max_depth,
        tuple(sorted(given.items())),
    )
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    sources = [
        (str(p), r.read_text(encoding="utf-8")) for p, r in zip(paths, resolved, strict=True)
    ]
    schema = compile_schema(sources, max_depth=max_depth, **options)
    with _cache_lock:
        _cache[key] = schema
    return schema
