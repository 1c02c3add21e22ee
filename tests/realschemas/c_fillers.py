"""C code that fills rpcgen's C structs of a compiled schema's types with pseudo-random valid
values (the ``generate`` mode of tests/codec/c/xdr_oracle.h), written from our type model
with rpcgen's C naming: a field ``T x<N>`` is ``x.x_len``/``x.x_val``, a typedef ``N`` of one
is ``N_len``/``N_val``, union ``U``'s arms are ``U_u.arm``; libtirpc's ``netobj`` is
``n_len``/``n_bytes``. So libtirpc makes values of its own, which we must decode and encode
back to the same bytes: the C-to-us direction with values we did not make.

Types whose C layout this does not know (inline struct/union definitions, libtirpc's
``authsys_parms``) get no filler (:class:`Unsupported`); the test reports them.
"""

from __future__ import annotations

import itertools
from typing import Any

from xdrstream.codec import Schema
from xdrstream.codec import model as m

BYTES, ITEMS, DEPTH = 32, 4, 3  # bounds of generated strings/opaque, arrays, optional nesting


class Unsupported(Exception):
    pass


_PRIM_DRAW = {
    "int": "r_i32()",
    "uint": "r_u32()",
    "hyper": "r_i64()",
    "uhyper": "r_u64()",
    "float": "r_float()",
    "double": "r_double()",
}


class FillerWriter:
    def __init__(self, schema: Schema) -> None:
        model = schema.model
        self.types = model.types
        self.named: dict[int, str] = {}  # structs/unions and typedefs with rpcgen C names
        for name, t in model.types.items():
            if isinstance(t, (m.Struct, m.Union_)) and t.name == name:
                self.named.setdefault(id(t), name)
        for name, t in model.typedefs.items():
            if isinstance(t, (m.Array, m.Opaque, m.String, m.Optional)):
                self.named.setdefault(id(t), name)
        builtin = model.types.get("netobj")
        self.netobj = id(builtin) if builtin is not None else None
        authsys = model.types.get("authsys_parms")
        self.authsys = id(authsys) if authsys is not None else None
        self.functions: dict[str, str] = {}
        self.counter = itertools.count()

    def function(self, name: str) -> str:
        """Makes sure ``fill_<name>`` exists; returns its name."""
        if name not in self.functions:
            self.functions[name] = ""  # recursion guard: types refer to themselves
            t = self.types[name]
            body = self.definition(t, name)
            self.functions[name] = f"static void fill_{name}({name} *p)\n{{\n{body}}}\n"
        return f"fill_{name}"

    def definition(self, t: m.XType, name: str) -> str:
        if id(t) == self.authsys:
            raise Unsupported("libtirpc's authsys_parms (C: struct authunix_parms)")
        if isinstance(t, m.Struct):
            return "".join(self.fill(f.type, f"p->{f.name}", f.name) for f in t.fields)
        if isinstance(t, m.Union_):
            return self.union(t, name)
        return self.fill(t, "(*p)", name, top=True)

    def fill(self, t: m.XType, lv: str, member: str, top: bool = False) -> str:
        """C statements filling lvalue ``lv`` of type ``t`` (a field/typedef named ``member``)."""
        if id(t) == self.authsys:
            raise Unsupported("libtirpc's authsys_parms (C: struct authunix_parms)")
        name = self.named.get(id(t))
        if name is not None and not top:
            return f"    {self.function(name)}(&{lv});\n"
        if isinstance(t, (m.Struct, m.Union_)):
            raise Unsupported(f"inline definition {t.name}")
        if isinstance(t, m.Prim):
            return f"    {lv} = {_PRIM_DRAW[t.kind]};\n"
        if isinstance(t, m.Bool):
            return f"    {lv} = below(2);\n"
        if isinstance(t, m.Enum):
            values = ", ".join(str(v) for v in t.members.values())
            n = len(t.members)
            return f"    {{ static const int v[] = {{{values}}}; {lv} = v[below({n})]; }}\n"
        if isinstance(t, m.String):
            return f"    {lv} = r_string({min(t.size, BYTES)});\n"
        if isinstance(t, m.Opaque):
            if t.fixed:
                return f"    r_bytes({lv}, {t.size});\n"
            length, data = (
                ("n_len", "n_bytes") if id(t) == self.netobj else (f"{member}_len", f"{member}_val")
            )
            return f"    {lv}.{data} = r_opaque({min(t.size, BYTES)}, &{lv}.{length});\n"
        k = f"k{next(self.counter)}"
        if isinstance(t, m.Array):
            if t.fixed:
                inner = self.fill(t.element, f"{lv}[{k}]", member)
                return f"    for (u_int {k} = 0; {k} < {t.size}; {k}++) {{\n{inner}    }}\n"
            length, data = f"{lv}.{member}_len", f"{lv}.{member}_val"
            inner = self.fill(t.element, f"{data}[{k}]", member)
            return (
                f"    {length} = below({min(t.size, ITEMS) + 1});\n"
                f"    {data} = calloc({length} ? {length} : 1, sizeof *{data});\n"
                f"    for (u_int {k} = 0; {k} < {length}; {k}++) {{\n{inner}    }}\n"
            )
        if isinstance(t, m.Optional):
            inner = self.fill(t.element, f"(*{lv})", member)
            return (
                f"    if (fill_depth < {DEPTH} && below(2)) {{\n"
                f"        {lv} = calloc(1, sizeof *{lv});\n        fill_depth++;\n{inner}"
                f"        fill_depth--;\n    }} else\n        {lv} = NULL;\n"
            )
        raise Unsupported(repr(t))

    def union(self, t: m.Union_, name: str) -> str:
        assert t.discriminant_type is not None
        options: list[tuple[int, m.Arm]] = [(a.labels[0], a) for a in t.arms]
        if t.default is not None:
            taken = {label for a in t.arms for label in a.labels}
            dtype = t.discriminant_type
            pool: Any = (
                dtype.members.values()
                if isinstance(dtype, m.Enum)
                else (0, 1)
                if isinstance(dtype, m.Bool)
                else itertools.count()
            )
            other = next((v for v in pool if v not in taken), None)
            if other is not None:
                options.append((other, t.default))
        cases = []
        for n, (label, arm) in enumerate(options):
            value = f"({label}U)" if label >= 2**31 else str(label)
            body = f"        p->{t.discriminant} = {value};\n"
            if arm.type is not None:
                body += self.fill(arm.type, f"p->{name}_u.{arm.name}", arm.name or "")
            cases.append(f"    case {n}:\n{body}        break;\n")
        return f"    switch (below({len(options)})) {{\n{''.join(cases)}    }}\n"

    def source(self) -> str:
        """Forward declarations, then the functions (types refer to each other)."""
        declarations = "".join(f"static void fill_{n}({n} *p);\n" for n in self.functions)
        return "static int fill_depth;\n" + declarations + "\n".join(self.functions.values())


def fillers(schema: Schema, types: list[str]) -> tuple[str, dict[str, str]]:
    """(C source defining ``fill_T`` for each type it can fill, {type: why not} for the rest)."""
    unsupported: dict[str, str] = {}
    writer = FillerWriter(schema)
    for name in types:
        saved = dict(writer.functions)
        try:
            writer.function(name)
        except Unsupported as why:
            writer.functions = saved
            unsupported[name] = str(why)
    return writer.source(), unsupported
