"""Python source generation for a resolved schema model.

Per struct/union/enum ``X`` the module defines the value class ``C_X`` and two functions:
``p_X(v, out)`` appends the pieces of ``v``'s encoding to the list ``out`` (the caller joins
them once: ``list.append`` is ~25 ns a piece cheaper than ``bytearray +=``, and the join is
the only copy); ``u_X(buf, off)``
returns ``(value, new_offset)``. Structs and unions that can contain themselves take a
third argument, the nesting depth, checked against ``MAX_DEPTH``. Typedefs of other types
get ``pt_<name>``/``ut_<name>``, built-in types ``pb_<name>``/``ub_<name>``. A fixed-layout
struct also gets ``b_X(v)``, returning its bytes from one ``struct`` call, and ``d_X(buf)``,
decoding a buffer of exactly its size.

Speed comes from doing at generation time what an interpreter does per value: consecutive
fixed-size items (and the length/flag word of the item after them) are packed/unpacked by
one precompiled ``struct.Struct``; nested fixed-size structs are flattened into that run;
arrays of scalars are one ``struct`` call; opaque data is a slice of the input. Packing
appends the pieces to a list joined once (measured 5-22% faster per pack on libvirt's and
NFSv4's real types than ``+=`` on one bytearray, which also copied the result once more).

The generated code validates everything but reports nothing itself: on invalid input it
raises whatever is cheapest (``struct.error``, ``KeyError``, ``Invalid``...). The wrappers in
:mod:`xdrstream.codec.runtime` catch that and let the exact, slow interpreter in
:mod:`xdrstream.codec.interp` find the type path and offset for the error message. So the
hot path carries no bookkeeping.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from xdrstream.codec import model as m
from xdrstream.codec.model import BUILTINS, XType

Sources = Sequence[tuple[str, str]]


class _New:
    """A decoded struct/union value not yet built: ``materialize`` emits
    ``v = _new(C_X)`` and one slot store per field, which is about half the cost of calling
    the dataclass's ``__init__`` (measured: 45 against 125 ns per object, CPython 3.11)."""

    __slots__ = ("args", "fields", "ident")

    def __init__(self, ident: str, fields: list[str], args: list[Expr]):
        self.ident = ident
        self.fields = fields
        self.args = args


Expr = str | _New  # a decoded value: a Python expression, or a value to build


# Largest fixed array of scalars fused into a struct run (bigger ones get their own call).
_MAX_FUSED_ARRAY = 32
_MAX_FUSED_OPAQUE = 256  # bytes of a fixed opaque fused into a struct run
# Largest struct/union (in type nodes) whose code is inlined into each of its users.
_MAX_INLINE_WEIGHT = 10
# Unions with more runs of labels than this dispatch by bisection (measured on NFSv4's
# nfs_argop4: 40 arms).
_SWITCH_CHAIN = 6


def builtin_ident(name: str) -> str:
    return name.replace(" ", "_")


class _Fn:
    """One generated function: lines plus a temporary-name counter."""

    def __init__(self, depth: bool):
        self.lines: list[str] = []
        self.n = 0
        self.depth = depth  # has the ``d`` parameter

    def tmp(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


class Generator:
    def __init__(self, model: m.Model, max_depth: int):
        self.model = model
        self.max_depth = max_depth
        self.structs: dict[str, str] = {}  # format -> global name
        self.label_sets: dict[frozenset[int], str] = {}  # a big union's labels -> global name
        self.fusable_cache: dict[int, bool] = {}
        self.weight_cache: dict[int, float] = {}
        self.direct: set[str] = set()  # idents of the types with a b_<ident> function
        self.out: list[str] = []

    # -- helpers -----------------------------------------------------------------------------

    def struct_const(self, fmt: str) -> str:
        name = self.structs.get(fmt)
        if name is None:
            name = f"_S{len(self.structs)}"
            self.structs[fmt] = name
        return name

    def fusable(self, t: XType) -> bool:
        """Fixed-size types whose whole encoding is one struct format without checks on
        padding: scalars, fixed arrays of scalars, fixed opaque data of whole words (libvirt's
        UUIDs, NFSv4's stateids and verifiers) and structs made only of such."""
        key = id(t)
        cached = self.fusable_cache.get(key)
        if cached is not None:
            return cached
        self.fusable_cache[key] = False  # guards against recursion
        if isinstance(t, (m.Prim, m.Bool, m.Enum)):
            result = True
        elif isinstance(t, m.Opaque):
            # No padding to check: ``Ns`` packs it, ``Nx`` skips it on unpack (the value is
            # a slice of the input, a memoryview with zero_copy as any opaque).
            result = t.fixed and not t.size & 3 and 0 < t.size <= _MAX_FUSED_OPAQUE
        elif isinstance(t, m.Array):
            result = t.fixed and self.scalar(t.element) and t.size <= _MAX_FUSED_ARRAY
        elif isinstance(t, m.Struct):
            result = not t.recursive and all(self.fusable(f.type) for f in t.fields)
        else:
            result = False
        self.fusable_cache[key] = result
        return result

    def inlinable(self, t: m.Struct | m.Union_) -> bool:
        """Structs and unions generated inline (no call, no tuple): small ones that contain
        no recursive type (whose depth count needs the call).  Everywhere, now that each
        function compiles at its first call (before, inlining outside arrays made libvirt's
        schema compile 0.15 s slower)."""
        return self.weight(t) <= _MAX_INLINE_WEIGHT

    def weight(self, t: XType) -> float:
        """Size of a type's inline code (infinite for recursive or linked types)."""
        key = id(t)
        cached = self.weight_cache.get(key)
        if cached is not None:
            return cached
        self.weight_cache[key] = float("inf")  # guards against recursion
        result: float = 1
        if isinstance(t, m.Struct):
            if t.recursive or t.linked:
                result = float("inf")
            else:
                result += sum(self.weight(f.type) for f in t.fields)
        elif isinstance(t, m.Union_):
            if t.recursive:
                result = float("inf")
            else:
                arms = [*t.arms, *([t.default] if t.default else [])]
                result += sum(self.weight(a.type) for a in arms if a.type is not None)
        elif isinstance(t, (m.Array, m.Optional)):
            result += self.weight(t.element)
        self.weight_cache[key] = result
        return result

    @staticmethod
    def scalar(t: XType) -> bool:
        return isinstance(t, (m.Prim, m.Bool, m.Enum))

    @staticmethod
    def scalar_fmt(t: XType) -> str:
        if isinstance(t, m.Prim):
            return t.fmt
        return "I" if isinstance(t, m.Bool) else "i"

    @staticmethod
    def scalar_size(t: XType) -> int:
        return t.size if isinstance(t, m.Prim) else 4

    @staticmethod
    def head_fmt(t: XType) -> str | None:
        """Format of the 4-byte word that starts a variable-size item, if any."""
        if isinstance(t, (m.String, m.Optional)) or (
            isinstance(t, (m.Opaque, m.Array)) and not t.fixed
        ):
            return "I"
        return None

    def call_args(self, fn: _Fn, t: m.Struct | m.Union_) -> str:
        if not t.recursive:
            return ""
        return ", d + 1" if fn.depth else ", 1"

    # -- packing -----------------------------------------------------------------------------

    def pack_seq(
        self,
        fn: _Fn,
        items: list[tuple[XType, str]],
        ind: int,
        pending: tuple[list[str], list[str]] | None = None,
    ) -> None:
        """Pack ``items`` in order; ``pending`` is a run (formats, arguments) not yet packed."""
        fmt: list[str] = list(pending[0]) if pending else []
        args: list[str] = list(pending[1]) if pending else []

        def flush() -> None:
            if fmt:
                s = self.struct_const(">" + "".join(fmt))
                fn.emit(ind, f"out.append({s}.pack({', '.join(args)}))")
                fmt.clear()
                args.clear()

        def item(t: XType, expr: str) -> None:
            if self.fusable(t):
                f, a = self.pack_fixed(fn, t, expr, ind)
                fmt.append(f)
                args.extend(a)
            elif self.head_fmt(t) is not None:
                var = fn.tmp()
                fn.emit(ind, f"{var} = {expr}")
                head = self.pack_head(fn, t, var, ind)
                fmt.append("I")
                args.append(head)
                flush()
                self.pack_body(fn, t, var, head, ind)
            elif isinstance(t, m.Struct) and self.inlinable(t):
                var = expr
                if not expr.isidentifier():
                    var = fn.tmp()
                    fn.emit(ind, f"{var} = {expr}")
                for field in t.fields:
                    item(field.type, f"{var}.{field.py}")
            elif isinstance(t, m.Union_) and self.inlinable(t):
                # Each arm packs the pending run with its discriminant and value.
                self.pack_union_arms(fn, t, expr, ind, (list(fmt), list(args)))
                fmt.clear()
                args.clear()
            else:
                flush()
                self.pack_other(fn, t, expr, ind)

        for t, expr in items:
            item(t, expr)
        flush()

    def pack_union_arms(
        self,
        fn: _Fn,
        t: m.Union_,
        expr: str,
        ind: int,
        pending: tuple[list[str], list[str]],
    ) -> None:
        dtype = t.discriminant_type
        assert dtype is not None
        var = fn.tmp()
        disc = fn.tmp()
        fn.emit(ind, f"{var} = {expr}")
        fn.emit(ind, f"{disc} = {var}.{t.discriminant_py}")
        self.switch(
            fn, t, disc, ind, lambda arm, i: self.pack_arm(fn, dtype, disc, arm, i, var, pending)
        )

    def switch(
        self, fn: _Fn, t: m.Union_, var: str, ind: int, body: Callable[[m.Arm, int], None]
    ) -> None:
        """Emit the dispatch on discriminant ``var``: ``body(arm, indent)`` per arm, the
        default arm (or ``raise _Invalid``) for other values. Up to ``_SWITCH_CHAIN`` runs
        of labels are one if/elif chain; more (NFSv4's ~40 operations) are one set test
        for the default and then a bisection on the labels: ~log2(n) compares, not n."""
        runs: list[tuple[int, int, int]] = []  # (first label, last label, arm), by label
        for label, i in sorted((n, i) for i, arm in enumerate(t.arms) for n in arm.labels):
            if runs and runs[-1][2] == i:
                runs[-1] = (runs[-1][0], label, i)
            else:
                runs.append((label, label, i))

        def default(inner: int) -> None:
            if t.default is not None:
                body(t.default, inner)
            else:
                fn.emit(inner, "raise _Invalid")

        if len(runs) <= _SWITCH_CHAIN:
            keyword = "if"
            for arm in t.arms:
                fn.emit(ind, f"{keyword} {self.label_test(var, arm.labels)}:")
                body(arm, ind + 1)
                keyword = "elif"
            if t.arms:
                fn.emit(ind, "else:")
            default(ind + 1 if t.arms else ind)
            return

        def bisect(part: list[tuple[int, int, int]], inner: int) -> None:
            # Only labels get here: a run's last label bounds it from above.
            if len(part) <= 3:
                for k, (_, last, i) in enumerate(part):
                    if k == len(part) - 1:
                        if k:
                            fn.emit(inner, "else:")
                        body(t.arms[i], inner + 1 if k else inner)
                    else:
                        fn.emit(inner, f"{'elif' if k else 'if'} {var} <= {last}:")
                        body(t.arms[i], inner + 1)
                return
            mid = len(part) // 2
            fn.emit(inner, f"if {var} < {part[mid][0]}:")
            bisect(part[:mid], inner + 1)
            fn.emit(inner, "else:")
            bisect(part[mid:], inner + 1)

        labels = frozenset(n for arm in t.arms for n in arm.labels)
        name = self.label_sets.setdefault(labels, f"_L{len(self.label_sets)}")
        fn.emit(ind, f"if {var} not in {name}:")
        default(ind + 1)
        fn.emit(ind, "else:")
        bisect(runs, ind + 1)

    def pack_fixed(self, fn: _Fn, t: XType, expr: str, ind: int) -> tuple[str, list[str]]:
        if isinstance(t, m.Prim) and t.narrow:
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            fn.emit(ind, f"if not {t.lo} <= {var} <= {t.hi}: raise _Invalid")
            return t.fmt, [var]
        if isinstance(t, m.Prim):
            return t.fmt, [expr]
        if isinstance(t, m.Bool):
            return "I", [f"_BOOL[{expr}]"]
        if isinstance(t, m.Enum):
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            if self.model.strict_enums:
                fn.emit(ind, f"if {var} not in _E_{t.ident}: raise _Invalid")
            return "i", [var]
        if isinstance(t, m.Opaque):
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            fn.emit(ind, f"if {var}.__class__ is not bytes:")  # struct's "s" takes only bytes
            fn.emit(ind + 1, f"if not _is_bytes({var}): raise _Invalid")
            fn.emit(ind + 1, f"{var} = _bytes({var})")
            fn.emit(ind, f"if len({var}) != {t.size}: raise _Invalid")
            return f"{t.size}s", [var]
        if isinstance(t, m.Array):
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            fn.emit(
                ind, f"if not isinstance({var}, _SEQ) or len({var}) != {t.size}: raise _Invalid"
            )
            return f"{t.size}{self.scalar_fmt(t.element)}", [
                self.scalar_star(fn, t.element, var, ind)
            ]
        assert isinstance(t, m.Struct)
        var = fn.tmp()
        fn.emit(ind, f"{var} = {expr}")
        fmts: list[str] = []
        args: list[str] = []
        for f in t.fields:
            ff, aa = self.pack_fixed(fn, f.type, f"{var}.{f.py}", ind)
            fmts.append(ff)
            args.extend(aa)
        return "".join(fmts), args

    def scalar_star(self, fn: _Fn, elem: XType, var: str, ind: int) -> str:
        """``*args`` expression for a sequence of scalars (after checking enum members)."""
        if isinstance(elem, m.Bool):
            return f"*map(_BOOL.__getitem__, {var})"
        if isinstance(elem, m.Enum) and self.model.strict_enums:
            fn.emit(ind, f"if not _E_{elem.ident}.issuperset({var}): raise _Invalid")
        if isinstance(elem, m.Prim) and elem.narrow:
            fn.emit(ind, f"if {var} and not {elem.lo} <= min({var}) <= max({var}) <= {elem.hi}:")
            fn.emit(ind + 1, "raise _Invalid")
        return f"*{var}"

    def pack_head(self, fn: _Fn, t: XType, var: str, ind: int) -> str:
        """Emit checks for a variable-size item held in ``var``; return its head word."""
        if isinstance(t, m.Optional):
            return f"{var} is not None"
        n = fn.tmp()
        if isinstance(t, m.String):
            # (no arguments for UTF-8: str.encode's fast path, measured 35 against 48 ns)
            fn.emit(ind, f"{var} = {var}.encode({self.utf8() if self.model.lenient else ''})")
            fn.emit(ind, f"{n} = len({var})")
        elif isinstance(t, m.Opaque):
            fn.emit(
                ind, f"if {var}.__class__ is not bytes and not _is_bytes({var}): raise _Invalid"
            )
            fn.emit(ind, f"{n} = len({var})")
        else:
            fn.emit(ind, f"if {var}.__class__ is not list and not isinstance({var}, _SEQ):")
            fn.emit(ind + 1, "raise _Invalid")
            fn.emit(ind, f"{n} = len({var})")
        assert isinstance(t, (m.String, m.Opaque, m.Array))
        if t.size < m.UINT_MAX:
            fn.emit(ind, f"if {n} > {t.size}: raise _Invalid")
        return n

    def pack_body(self, fn: _Fn, t: XType, var: str, head: str, ind: int) -> None:
        if isinstance(t, m.Optional):
            fn.emit(ind, f"if {var} is not None:")
            self.pack_seq(fn, [(t.element, var)], ind + 1)
        elif isinstance(t, (m.String, m.Opaque)):
            fn.emit(ind, f"out.append({var})")
            fn.emit(ind, f"if {head} & 3: out.append(_PAD[{head} & 3])")
        else:
            assert isinstance(t, m.Array)
            self.pack_elements(fn, t, var, head, ind)

    def pack_elements(self, fn: _Fn, t: m.Array, var: str, count: str, ind: int) -> None:
        if self.scalar(t.element):
            star = self.scalar_star(fn, t.element, var, ind)
            fmt = self.scalar_fmt(t.element)
            if t.fixed:
                s = self.struct_const(f">{t.size}{fmt}")
                fn.emit(ind, f"out.append({s}.pack({star}))")
            else:
                fn.emit(ind, f"out.append(_SC_{fmt}[{count}].pack({star}))")
            return
        item = fn.tmp()
        fn.emit(ind, f"for {item} in {var}:")
        self.pack_seq(fn, [(t.element, item)], ind + 1)

    def pack_other(self, fn: _Fn, t: XType, expr: str, ind: int) -> None:
        if isinstance(t, (m.Struct, m.Union_)):
            fn.emit(ind, f"p_{t.ident}({expr}, out{self.call_args(fn, t)})")
        elif isinstance(t, m.Opaque):
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            fn.emit(
                ind, f"if {var}.__class__ is not bytes and not _is_bytes({var}): raise _Invalid"
            )
            fn.emit(ind, f"if len({var}) != {t.size}: raise _Invalid")
            fn.emit(ind, f"out.append({var})")
            if t.size & 3:
                fn.emit(ind, f"out.append({bytes(4 - (t.size & 3))!r})")
        else:
            assert isinstance(t, m.Array) and t.fixed
            var = fn.tmp()
            fn.emit(ind, f"{var} = {expr}")
            fn.emit(
                ind, f"if not isinstance({var}, _SEQ) or len({var}) != {t.size}: raise _Invalid"
            )
            self.pack_elements(fn, t, var, str(t.size), ind)

    # -- unpacking ---------------------------------------------------------------------------

    @staticmethod
    def fields_py(t: m.Struct | m.Union_) -> list[str]:
        if isinstance(t, m.Struct):
            return [f.py for f in t.fields]
        return [t.discriminant_py, "value"]

    def materialize(self, fn: _Fn, expr: Expr, ind: int) -> str:
        """Emit the construction of ``expr`` (inner values first); return an expression."""
        if isinstance(expr, str):
            return expr
        args = [self.materialize(fn, a, ind) for a in expr.args]
        var = fn.tmp()
        fn.emit(ind, f"{var} = _new(C_{expr.ident})")
        for name, arg in zip(expr.fields, args, strict=True):
            fn.emit(ind, f"{var}.{name} = {arg}")
        return var

    def unpack_values(self, fn: _Fn, types: list[XType], ind: int) -> list[str]:
        """``unpack_seq``, then the values built: expressions to use once each."""
        exprs = self.unpack_seq(fn, types, ind)
        return [self.materialize(fn, e, ind) for e in exprs]

    def unpack_seq(self, fn: _Fn, types: list[XType], ind: int) -> list[Expr]:
        """Emit code decoding ``types`` in order at ``off``; return the values (to build
        with ``materialize`` once the code for all of them is emitted)."""
        fmt: list[str] = []
        names: list[str] = []
        checks: list[str] = []  # range checks of narrow integers, after the unpack
        slices: list[tuple[str, int, int]] = []  # fixed opaques: (name, offset in run, size)
        results: list[Expr] = []

        def flush() -> None:
            if fmt:
                full = ">" + "".join(fmt)
                s = self.struct_const(full)
                size = struct.calcsize(full)
                if names:
                    target = ", ".join(names) + ("," if len(names) == 1 else "")
                    fn.emit(ind, f"{target} = {s}.unpack_from(buf, off)")
                else:
                    fn.emit(ind, f"if off + {size} > len(buf): raise _Invalid")
                for var, at, n in slices:
                    start = f"off + {at}" if at else "off"
                    fn.emit(ind, f"{var} = buf[{start}:off + {at + n}]")
                fn.emit(ind, f"off += {size}")
                for check in checks:
                    fn.emit(ind, f"if not {check}: raise _Invalid")
                fmt.clear()
                names.clear()
                checks.clear()
                slices.clear()

        def item(t: XType) -> Expr:
            if self.fusable(t):
                at = struct.calcsize(">" + "".join(fmt))
                f, expr = self.unpack_fixed(fn, t, names, checks, slices, at)
                fmt.append(f)
                return expr
            if self.head_fmt(t) is not None:
                head = fn.tmp()
                fmt.append("I")
                names.append(head)
                flush()
                return self.unpack_body(fn, t, head, ind)
            if isinstance(t, m.Struct) and self.inlinable(t):
                return _New(t.ident, self.fields_py(t), [item(f.type) for f in t.fields])
            if isinstance(t, m.Union_) and self.inlinable(t):
                raw = fn.tmp()
                fmt.append(self.disc_fmt(t))
                names.append(raw)
                flush()
                var = fn.tmp()
                self.unpack_union_arms(fn, t, raw, ind, lambda expr: f"{var} = {expr}")
                return var
            flush()
            return self.unpack_other(fn, t, ind)

        for t in types:
            results.append(item(t))
        flush()
        return results

    def unpack_fixed(
        self,
        fn: _Fn,
        t: XType,
        names: list[str],
        checks: list[str],
        slices: list[tuple[str, int, int]],
        at: int,
    ) -> tuple[str, Expr]:
        """Format and value of fusable ``t`` at byte ``at`` of its run: its struct values
        are appended to ``names``, its fixed opaques to ``slices``."""
        if isinstance(t, m.Opaque):
            var = fn.tmp()
            slices.append((var, at, t.size))
            return f"{t.size}x", var
        if self.scalar(t):
            var = fn.tmp()
            names.append(var)
            if isinstance(t, m.Prim) and t.narrow and not self.model.lenient:
                checks.append(f"{t.lo} <= {var} <= {t.hi}")
            return self.scalar_fmt(t), self.scalar_value(t, var)
        if isinstance(t, m.Array):
            vars_ = [fn.tmp() for _ in range(t.size)]
            names.extend(vars_)
            elem = t.element
            if isinstance(elem, m.Prim) and elem.narrow and not self.model.lenient:
                checks.extend(f"{elem.lo} <= {v} <= {elem.hi}" for v in vars_)
            items = ", ".join(self.scalar_value(t.element, v) for v in vars_)
            return f"{t.size}{self.scalar_fmt(t.element)}", f"[{items}]"
        assert isinstance(t, m.Struct)
        fmts: list[str] = []
        exprs: list[Expr] = []
        for f in t.fields:
            ff, ee = self.unpack_fixed(fn, f.type, names, checks, slices, at)
            at += struct.calcsize(">" + ff)
            fmts.append(ff)
            exprs.append(ee)
        return "".join(fmts), _New(t.ident, self.fields_py(t), exprs)

    def scalar_value(self, t: XType, var: str) -> str:
        if isinstance(t, m.Prim) and t.narrow and self.model.lenient:
            return t.wrap_expr(var)  # libtirpc's xdr_char/xdr_short keep the low bits
        if isinstance(t, m.Bool):
            return f"({var} != 0)" if self.model.lenient else f"_B[{var}]"
        if isinstance(t, m.Enum):
            if not self.model.strict_enums:
                return f"_M_{t.ident}.get({var}, {var})"
            return f"_M_{t.ident}[{var}]"
        return var

    def utf8(self) -> str:
        """Codec arguments of strings: lenient ones carry any bytes (as C's char * does)."""
        return "'utf-8', 'surrogateescape'" if self.model.lenient else "'utf-8'"

    def unpack_bytes(self, fn: _Fn, t: m.String | m.Opaque, n: str, ind: int) -> str:
        """Bytes of length ``n`` (an expression or literal) plus zero padding at ``off``."""
        end = fn.tmp()
        padded = fn.tmp()
        var = fn.tmp()
        fn.emit(ind, f"{end} = off + {n}")
        fixed = isinstance(t, m.Opaque) and t.fixed
        if fixed and not t.size & 3:
            padded = end
            fn.emit(ind, f"if {end} > len(buf): raise _Invalid")
        elif fixed:
            fn.emit(ind, f"{padded} = {end} + {-t.size & 3}")
            fn.emit(ind, f"if {padded} > len(buf): raise _Invalid")
        else:
            fn.emit(ind, f"{padded} = {end} + (-{n} & 3)")
            bound = f"{n} > {t.size} or " if t.size < m.UINT_MAX else ""
            fn.emit(ind, f"if {bound}{padded} > len(buf): raise _Invalid")
        if (not fixed or t.size & 3) and not self.model.lenient:
            fn.emit(ind, f"if {padded} != {end} and buf[{end}:{padded}] != _Z[{padded} - {end}]:")
            fn.emit(ind + 1, "raise _Invalid")
        if isinstance(t, m.String):
            # bytes.decode() is about half the cost of str(); a zero-copy memoryview has none.
            fn.emit(
                ind,
                f"{var} = buf[off:{end}].decode({self.utf8() if self.model.lenient else ''}) "
                f"if buf.__class__ is _bytes "
                f"else _str(buf[off:{end}], {self.utf8()})",
            )
        else:
            fn.emit(ind, f"{var} = buf[off:{end}]")
        fn.emit(ind, f"off = {padded}")
        return var

    def unpack_body(self, fn: _Fn, t: XType, head: str, ind: int) -> str:
        if isinstance(t, (m.String, m.Opaque)):
            return self.unpack_bytes(fn, t, head, ind)
        if isinstance(t, m.Optional):
            var = fn.tmp()
            fn.emit(ind, f"if {head} == 1:" if not self.model.lenient else f"if {head}:")
            (expr,) = self.unpack_values(fn, [t.element], ind + 1)
            fn.emit(ind + 1, f"{var} = {expr}")
            if self.model.lenient:  # libtirpc's xdr_pointer: any non-zero flag is TRUE
                fn.emit(ind, "else:")
                fn.emit(ind + 1, f"{var} = None")
                return var
            fn.emit(ind, f"elif {head} == 0:")
            fn.emit(ind + 1, f"{var} = None")
            fn.emit(ind, "else:")
            fn.emit(ind + 1, "raise _Invalid")
            return var
        assert isinstance(t, m.Array)
        return self.unpack_elements(fn, t, head, ind)

    def unpack_elements(self, fn: _Fn, t: m.Array, count: str, ind: int) -> str:
        var = fn.tmp()
        elem = t.element
        bound = f"{count} > {t.size} or " if not t.fixed and t.size < m.UINT_MAX else ""
        if self.scalar(elem):
            size = self.scalar_size(elem)
            end = fn.tmp()
            fn.emit(ind, f"{end} = off + {count} * {size}")
            fn.emit(ind, f"if {bound}{end} > len(buf): raise _Invalid")
            fmt = self.scalar_fmt(elem)
            call = (
                f"{self.struct_const(f'>{t.size}{fmt}')}.unpack_from(buf, off)"
                if t.fixed
                else f"_SC_{fmt}[{count}].unpack_from(buf, off)"
            )
            if self.scalar_value(elem, "x") != "x":
                fn.emit(ind, f"{var} = [{self.scalar_value(elem, 'x')} for x in {call}]")
            else:
                fn.emit(ind, f"{var} = list({call})")
            if isinstance(elem, m.Prim) and elem.narrow and not self.model.lenient:
                fn.emit(
                    ind, f"if {var} and not {elem.lo} <= min({var}) <= max({var}) <= {elem.hi}:"
                )
                fn.emit(ind + 1, "raise _Invalid")
            fn.emit(ind, f"off = {end}")
            return var
        least = max(int(self.model.min_size[id(elem)]), 1)
        fn.emit(ind, f"if {bound}off + {count} * {least} > len(buf): raise _Invalid")
        fn.emit(ind, f"{var} = []")
        fn.emit(ind, f"for _ in range({count}):")
        (expr,) = self.unpack_values(fn, [elem], ind + 1)
        fn.emit(ind + 1, f"{var}.append({expr})")
        return var

    def unpack_other(self, fn: _Fn, t: XType, ind: int) -> str:
        var = fn.tmp()
        if isinstance(t, (m.Struct, m.Union_)):
            fn.emit(ind, f"{var}, off = u_{t.ident}(buf, off{self.call_args(fn, t)})")
            return var
        if isinstance(t, m.Opaque):
            return self.unpack_bytes(fn, t, str(t.size), ind)
        assert isinstance(t, m.Array) and t.fixed
        return self.unpack_elements(fn, t, str(t.size), ind)

    # -- functions per type ------------------------------------------------------------------

    def function(self, name: str, params: str, fn: _Fn, doc: str) -> None:
        self.out.append(f"def {name}({params}):")
        self.out.append(f"    {doc!r}")
        if fn.depth:
            self.out.append("    if d > MAX_DEPTH: raise _TooDeep")
        self.out.extend(fn.lines)
        self.out.append("")
        self.out.append("")

    def gen_linked(self, t: m.Struct) -> None:
        """A linked list (``entry *next`` last): one loop over the nodes, so its length is
        bounded by the input, not by the depth limit or the Python stack."""
        last = t.fields[-1]
        body = t.fields[:-1]
        fn = _Fn(True)
        # A cycle (``a.next = a``) would never end: Brent's check, a compare per node.
        fn.emit(1, "mark = v")
        fn.emit(1, "steps = 0")
        fn.emit(1, "span = 2")
        fn.emit(1, "while True:")
        self.pack_seq(fn, [(f.type, f"v.{f.py}") for f in body], 2)
        fn.emit(2, f"v = v.{last.py}")
        fn.emit(2, "if v is None:")
        fn.emit(3, "out.append(_W0)")
        fn.emit(3, "return")
        fn.emit(2, "if v is mark: raise _Invalid")
        fn.emit(2, "steps += 1")
        fn.emit(2, "if steps == span:")
        fn.emit(3, "mark = v")
        fn.emit(3, "steps = 0")
        fn.emit(3, "span += span")
        fn.emit(2, "out.append(_W1)")
        self.function(f"p_{t.ident}", "v, out, d=1", fn, f"Pack the list struct {t.name}.")
        fn = _Fn(True)
        fn.emit(1, "head = prev = None")
        fn.emit(1, "while True:")
        exprs = self.unpack_values(fn, [f.type for f in body], 2)
        flag = fn.tmp()
        fn.emit(2, f"{flag}, = _S_I.unpack_from(buf, off)")
        fn.emit(2, "off += 4")
        fn.emit(2, f"node = _new(C_{t.ident})")
        for field, expr in zip(t.fields, [*exprs, "None"], strict=True):
            fn.emit(2, f"node.{field.py} = {expr}")
        fn.emit(2, "if prev is None:")
        fn.emit(3, "head = node")
        fn.emit(2, "else:")
        fn.emit(3, f"prev.{last.py} = node")
        fn.emit(2, "prev = node")
        fn.emit(2, f"if {flag} == 0:")
        fn.emit(3, "return head, off")
        if not self.model.lenient:  # libtirpc's xdr_bool: any non-zero word is TRUE
            fn.emit(2, f"if {flag} != 1: raise _Invalid")
        self.function(f"u_{t.ident}", "buf, off, d=1", fn, f"Unpack the list struct {t.name}.")

    def gen_struct(self, t: m.Struct) -> None:
        if t.linked:
            self.gen_linked(t)
            return
        extra = ", d=1" if t.recursive else ""
        fn = _Fn(t.recursive)
        self.pack_seq(fn, [(f.type, f"v.{f.py}") for f in t.fields], 1)
        self.function(f"p_{t.ident}", f"v, out{extra}", fn, f"Pack struct {t.name}.")
        if self.fusable(t):
            # A fixed-layout struct is one pack call: the bytes, no bytearray to copy.
            fn = _Fn(False)
            f, args = self.pack_fixed(fn, t, "v", 1)
            fn.emit(1, f"return {self.struct_const('>' + f)}.pack({', '.join(args)})")
            self.function(f"b_{t.ident}", "v", fn, f"Encode struct {t.name}.")
            fn = _Fn(False)
            names: list[str] = []
            checks: list[str] = []
            slices: list[tuple[str, int, int]] = []
            f, expr = self.unpack_fixed(fn, t, names, checks, slices, 0)
            s = self.struct_const(">" + f)
            target = ", ".join(names) + ("," if len(names) == 1 else "")
            # struct.error unless buf is exactly its size
            fn.emit(1, f"{target} = {s}.unpack(buf)" if names else f"{s}.unpack(buf)")
            for var, at, n in slices:
                fn.emit(1, f"{var} = buf[{at}:{at + n}]")
            for check in checks:
                fn.emit(1, f"if not {check}: raise _Invalid")
            fn.emit(1, f"return {self.materialize(fn, expr, 1)}")
            self.function(f"d_{t.ident}", "buf", fn, f"Decode all of buf as struct {t.name}.")
            self.direct.add(t.ident)
        fn = _Fn(t.recursive)
        exprs = self.unpack_seq(fn, [f.type for f in t.fields], 1)
        value = self.materialize(fn, _New(t.ident, self.fields_py(t), exprs), 1)
        fn.emit(1, f"return {value}, off")
        self.function(f"u_{t.ident}", f"buf, off{extra}", fn, f"Unpack struct {t.name}.")

    def label_test(self, var: str, labels: list[int]) -> str:
        return " or ".join(f"{var} == {n}" for n in labels)

    def gen_union(self, t: m.Union_) -> None:
        extra = ", d=1" if t.recursive else ""
        dtype = t.discriminant_type
        assert dtype is not None
        # pack
        fn = _Fn(t.recursive)
        disc = fn.tmp()
        fn.emit(1, f"{disc} = v.{t.discriminant_py}")
        self.switch(fn, t, disc, 1, lambda arm, i: self.pack_arm(fn, dtype, disc, arm, i))
        self.function(f"p_{t.ident}", f"v, out{extra}", fn, f"Pack union {t.name}.")
        # unpack
        fn = _Fn(t.recursive)
        raw = fn.tmp()
        fn.emit(1, f"{raw}, = {self.struct_const('>' + self.disc_fmt(t))}.unpack_from(buf, off)")
        fn.emit(1, "off += 4")
        self.unpack_union_arms(fn, t, raw, 1, lambda expr: f"return {expr}, off")
        self.function(f"u_{t.ident}", f"buf, off{extra}", fn, f"Unpack union {t.name}.")

    @staticmethod
    def disc_fmt(t: m.Union_) -> str:
        dtype = t.discriminant_type
        return "i" if not isinstance(dtype, m.Prim) or dtype.kind == "int" else "I"

    def unpack_union_arms(
        self, fn: _Fn, t: m.Union_, raw: str, ind: int, done: Callable[[str], str]
    ) -> None:
        """Code after the discriminant word ``raw`` was read: each arm decodes its value
        and emits ``done(value expression)``."""
        dtype = t.discriminant_type
        assert dtype is not None
        if isinstance(dtype, m.Prim) and dtype.narrow and self.model.lenient:
            fn.emit(ind, f"{raw} = {dtype.wrap_expr(raw)}")  # xdr_short: (short) l
        elif isinstance(dtype, m.Prim) and dtype.narrow:
            fn.emit(ind, f"if not {dtype.lo} <= {raw} <= {dtype.hi}: raise _Invalid")
        if isinstance(dtype, m.Bool) and self.model.lenient:
            fn.emit(ind, f"if {raw}: {raw} = 1")  # xdr_bool stores TRUE for any non-zero word
        value = raw if isinstance(dtype, m.Prim) else self.scalar_value(dtype, raw)
        if value != raw:
            dv = fn.tmp()
            fn.emit(ind, f"{dv} = {value}")
            value = dv
        self.switch(fn, t, raw, ind, lambda arm, i: self.unpack_arm(fn, t, value, arm, i, done))

    def pack_arm(
        self,
        fn: _Fn,
        dtype: XType,
        disc: str,
        arm: m.Arm,
        ind: int,
        var: str = "v",
        pending: tuple[list[str], list[str]] | None = None,
    ) -> None:
        if (
            isinstance(dtype, m.Enum)
            and arm.labels
            and set(arm.labels) <= set(dtype.members.values())
        ):
            # The dispatch matched one of this arm's labels, all enum members: the enum's
            # membership test would be a second one (~30 ns an operation in NFSv4's unions).
            dtype = m.PRIMS["int"]
        items: list[tuple[XType, str]] = [(dtype, disc)]
        if arm.type is not None:
            items.append((arm.type, f"{var}.value"))
        self.pack_seq(fn, items, ind, pending)

    def unpack_arm(
        self, fn: _Fn, t: m.Union_, disc: str, arm: m.Arm, ind: int, done: Callable[[str], str]
    ) -> None:
        args: list[Expr] = [disc, "None"]
        if arm.type is not None:
            args[1:] = self.unpack_seq(fn, [arm.type], ind)
        fn.emit(ind, done(self.materialize(fn, _New(t.ident, self.fields_py(t), args), ind)))

    def gen_plain(self, prefix: str, ident: str, t: XType, label: str) -> None:
        """Functions for a typedef or built-in type (recursion starts at depth 1)."""
        fn = _Fn(False)
        self.pack_seq(fn, [(t, "v")], 1)
        self.function(f"p{prefix}_{ident}", "v, out", fn, f"Pack {label}.")
        fn = _Fn(False)
        (expr,) = self.unpack_values(fn, [t], 1)
        fn.emit(1, f"return {expr}, off")
        self.function(f"u{prefix}_{ident}", "buf, off", fn, f"Unpack {label}.")

    def gen_enum(self, t: m.Enum) -> None:
        self.gen_plain("", t.ident, t, f"enum {t.name}")

    # -- classes -----------------------------------------------------------------------------

    @staticmethod
    def dataclass_source(
        ident: str, doc: str, names: list[str], defaults: int, methods: bool = True
    ) -> list[str]:
        """What ``@dataclass(slots=True)`` makes of ``names`` (the last ``defaults`` of them
        None by default): the decorator costs ~0.5 ms per class at import (it compiles
        three methods per class); here ``__init__`` is compiled with the module (and
        cached), ``__eq__``/``__repr__`` are closures made by the runtime and
        ``_rt.dataclass_fields`` adds the ``dataclasses.fields`` metadata. ``__init__``'s
        first parameter is ``_s``: field names never start with ``_``."""
        params = [f"{n}=None" if i >= len(names) - defaults else n for i, n in enumerate(names)]
        lines = [
            f"class C_{ident}:",
            f"    {doc!r}",
            f"    __slots__ = {tuple(names)!r}",
            f"    __match_args__ = {tuple(names)!r}",
            "    __hash__ = None",
            f"    def __init__({', '.join(['_s', *params])}):",
            *[f"        _s.{n} = {n}" for n in names],
        ]
        if not names:
            lines.append("        pass")
        if methods:
            lines += [f"    __eq__, __repr__ = _dataclass_methods({tuple(names)!r})"]
        return lines

    def class_source(self, t: XType) -> list[str]:
        lines: list[str] = []
        if isinstance(t, m.Struct):
            doc = f"struct {t.name}: " + "; ".join(
                f"{m.type_label(f.type)} {f.name}"
                + (f" (attribute {f.py})" if f.py != f.name else "")
                for f in t.fields
            )
            if t.linked:
                # Equality and repr walk the list in a loop (the dataclass ones recurse).
                last = t.fields[-1].py
                head = [f.py for f in t.fields[:-1]]
                lines += self.dataclass_source(t.ident, doc, [f.py for f in t.fields], 0, False)
                lines += [
                    f"    __eq__ = _rt.linked_eq({head!r}, {last!r})",
                    f"    __repr__ = _rt.linked_repr({head!r}, {last!r})",
                ]
            else:
                lines += self.dataclass_source(t.ident, doc, [f.py for f in t.fields], 0)
        elif isinstance(t, m.Union_):
            assert t.discriminant_type is not None
            arms = []
            for arm in (*t.arms, t.default):
                if arm is None:
                    continue
                cases = ", ".join(str(n) for n in arm.labels) or "default"
                body = "void" if arm.type is None else f"{m.type_label(arm.type)} {arm.name}"
                arms.append(f"{cases}: {body}")
            doc = (
                f"union {t.name} switch ({m.type_label(t.discriminant_type)} {t.discriminant}): "
                f"attribute {t.discriminant_py!r} holds the discriminant, 'value' the arm's "
                f"value (None for void arms). Arms: " + "; ".join(arms)
            )
            lines += self.dataclass_source(t.ident, doc, [t.discriminant_py, "value"], 1)
            if t.discriminant_py != "discriminant":
                # Generic code can read any union's discriminant under one name.
                lines.append(f"    discriminant = property(lambda self: self.{t.discriminant_py})")
        else:
            assert isinstance(t, m.Enum)
            lines += [f"class C_{t.ident}(_IntEnum):", f"    {f'enum {t.name}'!r}"]
            lines += [f"    {py} = {n}" for py, n in t.py_members]
            if not t.py_members:
                lines.append("    pass")
        lines.append(f"C_{t.ident}.__name__ = C_{t.ident}.__qualname__ = {t.name!r}")
        if isinstance(t, (m.Struct, m.Union_)):
            lines.append(f"_dataclass_fields(C_{t.ident}, {int(isinstance(t, m.Union_))})")
        if isinstance(t, m.Enum):
            lines.append(f"_M_{t.ident} = {{e.value: e for e in C_{t.ident}}}")
            lines.append(f"_E_{t.ident} = frozenset(_M_{t.ident})")
        lines.append("")
        return lines

    # -- module ------------------------------------------------------------------------------

    def options(self) -> dict[str, object]:
        """``build_model``'s keyword arguments that rebuild this model."""
        model = self.model
        return {
            "rpc_constants": model.rpc_constants,
            "strict_enums": model.strict_enums,
            "lenient": model.lenient,
        }

    def generate(self, sources: Sources, constants: Mapping[str, int | str]) -> str:
        model = self.model
        body: list[str] = []
        for c in model.compounds:
            body += self.class_source(c)
        for c in model.compounds:
            if isinstance(c, m.Struct):
                self.gen_struct(c)
            elif isinstance(c, m.Union_):
                self.gen_union(c)
            else:
                self.gen_enum(c)
        for name, t in model.typedefs.items():
            self.gen_plain("t", name, t, f"typedef {name}")
        for name, t in BUILTINS.items():
            self.gen_plain("b", builtin_ident(name), t, f"built-in {name}")
        functions = self.out

        table: list[str] = []
        for name, t in model.types.items():
            if isinstance(t, (m.Struct, m.Union_, m.Enum)):
                direct = f", b_{t.ident}, d_{t.ident}" if t.ident in self.direct else ""
                table.append(f"    {name!r}: (C_{t.ident}, p_{t.ident}, u_{t.ident}{direct}),")
            else:
                table.append(f"    {name!r}: (None, pt_{name}, ut_{name}),")
        for name in BUILTINS:
            ident = builtin_ident(name)
            table.append(f"    {name!r}: (None, pb_{ident}, ub_{ident}),")

        head = [
            f"# Generated by xdrstream from {model.filename!r}. Do not edit.",
            '"""XDR codecs generated by xdrstream; SCHEMA is the xdrstream.codec.Schema."""',
            "import struct as _struct",
            "from enum import IntEnum as _IntEnum",
            "",
            "from xdrstream.codec import runtime as _rt",
            "",
            f"MAX_DEPTH = {self.max_depth!r}",
            "_Invalid = _rt.Invalid",
            "_TooDeep = _rt.TooDeep",
            "_is_bytes = _rt.is_bytes",
            "_dataclass_methods = _rt.dataclass_methods",
            "_dataclass_fields = _rt.dataclass_fields",
            "_SEQ = (list, tuple)",
            *[f"_SC_{c} = _rt.StructCache({c!r})" for c in "iIqQfd"],
            "_str = str",
            "_bytes = bytes",
            "_Z = (b'', b'\\x00', b'\\x00\\x00', b'\\x00\\x00\\x00')",
            "_PAD = (b'', b'\\x00\\x00\\x00', b'\\x00\\x00', b'\\x00')",
            "_B = {0: False, 1: True}",
            "_W0 = b'\\x00\\x00\\x00\\x00'",
            "_W1 = b'\\x00\\x00\\x00\\x01'",
            "_S_I = _struct.Struct('>I')",
            "_new = object.__new__",
            "_BOOL = {False: 0, True: 1}",
        ]
        for fmt, name in self.structs.items():
            head.append(f"{name} = _struct.Struct({fmt!r})")
        for labels, name in self.label_sets.items():
            head.append(f"{name} = frozenset({sorted(labels)!r})")
        head.append("")
        tail = [
            "_TYPES = {",
            *table,
            "}",
            f"_SOURCES = {tuple(sources)!r}",
            f"_CONSTANTS = {dict(constants)!r}",
            f"_OPTIONS = {self.options()!r}",
            f"_FILENAME = {model.filename!r}",
            f"_DEFINED_BUILTINS = {tuple(n for n in BUILTINS if n in model.types)!r}",
            f"_ALL_CONSTANTS = {dict(model.constants)!r}",
            f"_PROGRAMS = {m.program_facts(model)!r}",
            f"_MAX_SIZES = { ({n: m.max_size(t) for n, t in model.types.items()})!r}",
            "SCHEMA = _rt.build_schema(globals())",
            "",
        ]
        return "\n".join([*head, *body, "", *functions, *tail])


def generate(
    model: m.Model,
    sources: Sources,
    max_depth: int,
    constants: Mapping[str, int | str] | None = None,
) -> str:
    """Module source; ``sources`` ((filename, text) after preprocessing) and ``constants``
    are stored in it so that ``build_schema`` can rebuild the model without a preprocessor."""
    return Generator(model, max_depth).generate(sources, constants or {})
