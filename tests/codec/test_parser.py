"""Parser and resolver: every construct of the language, annotations, and schema errors."""

from __future__ import annotations

import pytest

from xdrstream.codec import SchemaError, compile_schema
from xdrstream.codec import ast as a
from xdrstream.codec import model as m
from xdrstream.codec.parser import parse, parse_annotations


def only_typedef(text: str) -> a.TypeSpec:
    (d,) = parse(text).definitions
    assert isinstance(d, a.TypeDef)
    return d.type


def test_primitive_type_specifiers() -> None:
    spec = only_typedef(
        "struct s { int a; unsigned int b; unsigned c; hyper d; unsigned hyper e;"
        " bool f; float g; double h; };"
    )
    assert isinstance(spec, a.StructSpec)
    names = [f.type.name for f in spec.fields if isinstance(f.type, a.PrimSpec)]
    assert names == [
        "int",
        "unsigned int",
        "unsigned int",
        "hyper",
        "unsigned hyper",
        "bool",
        "float",
        "double",
    ]


def test_declaration_forms() -> None:
    spec = only_typedef(
        "struct s { opaque a[4]; opaque b<8>; opaque c<>; string d<N>; string e<>;"
        " int f[3]; int g<5>; int h<>; s *i; };"
    )
    assert isinstance(spec, a.StructSpec)
    types = {f.name: f.type for f in spec.fields}
    assert isinstance(types["a"], a.OpaqueSpec) and types["a"].fixed
    assert types["a"].size is not None and types["a"].size.number == 4
    assert isinstance(types["b"], a.OpaqueSpec) and not types["b"].fixed
    assert types["c"].size is None  # type: ignore[union-attr]
    assert isinstance(types["d"], a.StringSpec) and types["d"].size is not None
    assert types["d"].size.name == "N"
    assert isinstance(types["e"], a.StringSpec) and types["e"].size is None
    assert isinstance(types["f"], a.ArraySpec) and types["f"].fixed
    assert isinstance(types["g"], a.ArraySpec) and not types["g"].fixed
    assert isinstance(types["h"], a.ArraySpec) and types["h"].size is None
    assert isinstance(types["i"], a.OptionalSpec)
    assert types["i"].element == a.NamedSpec(types["i"].element.pos, "s")


def test_union_with_several_labels_default_and_void() -> None:
    spec = only_typedef(
        "union u switch (int k) { case 1: case 2: int x; case 3: void; default: void; };"
    )
    assert isinstance(spec, a.UnionSpec)
    assert [len(arm.labels) for arm in spec.arms] == [2, 1]
    assert spec.arms[1].declaration is None
    assert spec.default is not None and spec.default.declaration is None


def test_constants_in_every_base_and_by_name() -> None:
    schema = compile_schema(
        "const D = 10; const H = 0x1f; const O = 017; const N = -3; const Z = 0;"
        " const R = H; const BIG = 0xFFFFFFFF;"
    )
    assert dict(schema.constants) == {
        "D": 10,
        "H": 31,
        "O": 15,
        "N": -3,
        "Z": 0,
        "R": 31,
        "BIG": 0xFFFFFFFF,
    }


def test_enum_members_are_constants_with_rpcgen_implicit_values() -> None:
    schema = compile_schema("enum e { A, B = 5, C, D = A };")
    assert {k: schema.constants[k] for k in "ABCD"} == {"A": 0, "B": 5, "C": 6, "D": 0}


def test_forward_references_in_any_order() -> None:
    schema = compile_schema(
        """
        typedef later_t alias_t;
        struct uses { alias_t a; int arr[SIZE]; color c; };
        const SIZE = LAST;
        typedef int later_t;
        enum color { FIRST = 1, LAST = 2 };
        """
    )
    uses = schema.model.types["uses"]
    assert isinstance(uses, m.Struct)
    assert isinstance(uses.fields[1].type, m.Array) and uses.fields[1].type.size == 2
    alias = uses.fields[0].type
    assert isinstance(alias, m.Prim) and alias.xname == "int" and alias.fmt == "i"
    assert alias is schema.model.types["alias_t"] is not schema.model.types["later_t"]
    U, C = schema["uses"], schema["color"]
    assert U.unpack(U.pack(U(a=1, arr=[2, 3], c=C.LAST))) == U(a=1, arr=[2, 3], c=C.LAST)


def test_recursive_types_resolve_to_the_same_object() -> None:
    schema = compile_schema("struct node { int v; node *next; }; typedef node *list;")
    node = schema.model.types["node"]
    assert isinstance(node, m.Struct) and node.recursive
    nxt = node.fields[1].type
    assert isinstance(nxt, m.Optional) and nxt.element is node
    lst = schema.model.types["list"]
    assert isinstance(lst, m.Optional) and lst.element is node


def test_inline_type_specifiers_get_dotted_names() -> None:
    schema = compile_schema(
        "struct outer { struct { int a; } in; enum { X = 1 } e;"
        " union switch (bool b) { case TRUE: int v; case FALSE: void; } u; };"
    )
    assert {"outer.in", "outer.e", "outer.u"} <= set(schema)
    assert schema["outer.in"].__name__ == "outer.in"
    assert schema.constants["X"] == 1


def test_struct_name_references_like_c() -> None:
    schema = compile_schema(
        "struct a { int x; }; struct b { struct a *p; union u v; }; "
        "union u switch (unsigned k) { default: void; };"
    )
    b = schema.model.types["b"]
    assert isinstance(b, m.Struct)
    assert (
        isinstance(b.fields[0].type, m.Optional)
        and b.fields[0].type.element is schema.model.types["a"]
    )


def test_programs_versions_procedures_and_their_constants() -> None:
    schema = compile_schema(
        """
        struct args { int a; };
        program PROG {
            version V1 {
                void NULLPROC(void) = 0;
                args ECHO(args) = 1;
                unsigned hyper SIZE(string) = 2;
            } = 1;
            version V2 { int PING(unsigned) = 0x10; } = 2;
        } = 0x20000001;
        """
    )
    prog = schema.programs["PROG"]
    assert prog.number == 0x20000001 and sorted(prog.versions) == [1, 2]
    v1 = prog.versions[1]
    assert v1.name == "V1"
    null, echo, size = (v1.procedures[n] for n in (0, 1, 2))
    assert (null.arg_type, null.result_type, null.arg, null.result) == (None, None, None, None)
    assert (echo.arg_type, echo.result_type) == ("args", "args")
    assert echo.arg is schema["args"] and echo.result is schema["args"]
    assert (size.arg_type, size.result_type) == ("string", "unsigned hyper")
    assert size.arg.pack("ab") == b"\0\0\0\x02ab\0\0"
    assert size.result.pack(1) == b"\0" * 7 + b"\x01"
    ping = prog.versions[2].procedures[16]
    assert (ping.name, ping.arg_type, ping.result_type) == ("PING", "unsigned int", "int")
    constants = schema.constants
    assert (constants["PROG"], constants["V2"], constants["PING"], constants["SIZE"]) == (
        0x20000001,
        2,
        16,
        2,
    )


def test_procedure_annotations_from_the_comment_right_before() -> None:
    schema = compile_schema(
        """
        struct restore_args { int a; };
        struct restore_ret { int r; };
        program RESTORE_PROGRAM {
            version RESTORE_V1 {
                /* Restore a guest from a client->server stream.
                 * @stream: upload v2
                 * @sparse
                 *   @weird-name.x:   spaced value
                 * not an @annotation: because it is mid-line
                 */
                restore_ret RESTORE_PROC_RESTORE_V2(restore_args) = 3;
                /* @stream: download */

                int NOT_ANNOTATED(void) = 4;
                /* @ignored: a comment before another comment */ /* plain */
                int ALSO_PLAIN(void) = 5;
            } = 1;
        } = 0x58445253;
        """
    )
    procs = schema.programs["RESTORE_PROGRAM"].versions[1].procedures
    assert dict(procs[3].annotations) == {
        "stream": "upload v2",
        "sparse": "",
        "weird-name.x": "spaced value",
    }
    # Blank lines are whitespace, so the comment still immediately precedes procedure 4.
    assert dict(procs[4].annotations) == {"stream": "download"}
    assert dict(procs[5].annotations) == {}


def test_parse_annotations_directly() -> None:
    assert parse_annotations(None) == ()
    assert parse_annotations("*\n * @a: 1\n@b\n x @c: no") == (("a", "1"), ("b", ""))


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("struct s { int x }", "1:18", "expected ';', found '}'"),
        ("struct s {\n  int;\n};", "2:6", "expected a name, found ';'"),
        ("typedef quadruple q;", "1:9", "'quadruple' (128-bit floating point) is unsupported"),
        ("const A = ;", "1:11", "expected a constant, found ';'"),
        ("struct s { };", "1:12", "a struct needs at least one member"),
        ("union u switch (int k) { int x; };", "1:26", "expected 'case', 'default' or '}'"),
        ("foo bar;", "1:1", "expected a definition"),
        ("struct s { int x; }", "1:20", "expected ';', found end of file"),
        ("struct s { void; };", "1:12", "'void' is not allowed as a struct member"),
        ("struct s { int struct; };", "1:16", "expected a name, found keyword 'struct'"),
        (
            "program P { version V { int F(int, int) = 1; } = 1; } = 1;",
            "1:25",
            "takes 2 arguments",
        ),
    ],
)
def test_syntax_errors_name_file_line_and_column(text: str, where: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(text, filename="bad.x")
    assert str(info.value).startswith(f"bad.x:{where}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "struct pair {\n  int a;\n  int b;\n\nstruct next { int c; };\n",
            "5:13",
            "(in struct pair, opened at bad.x:1:1: is its '}' missing?)",
        ),
        (
            "struct pair {\n  int a;\n\ntypedef int b;\n",
            "4:1",
            "found keyword 'typedef' (in struct pair, opened at bad.x:1:1: is its '}' missing?)",
        ),
        ("enum e { A,\n", "2:1", "(in enum e, opened at bad.x:1:1: is its '}' missing?)"),
        (
            "const X = 1;\nunion u switch (int d) { case 1: int x;\n",
            "3:1",
            "(in union u, opened at bad.x:2:1: is its '}' missing?)",
        ),
        (
            "program P { version V { void F(void) = 1;\n",
            "2:1",
            "(in program P, opened at bad.x:1:1: is its '}' missing?)",
        ),
        (
            "struct s {\n  int x }",
            "2:9",
            "expected ';', found '}' (in struct s, opened at bad.x:1:1)",
        ),
    ],
)
def test_an_unclosed_or_broken_definition_is_named(text: str, where: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(text, filename="bad.x")
    assert str(info.value).startswith(f"bad.x:{where}: ")
    assert str(info.value).endswith(reason)


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("struct s { missing x; };", "1:12", "undefined type 'missing'"),
        ("struct s { int x[N]; };", "1:18", "undefined constant 'N'"),
        ("const A = 1; const A = 2;", "1:14", "'A' is already defined"),
        ("struct s { int a; int a; };", "1:19", "duplicate member 'a'"),
        ("typedef a b; typedef b a;", "1:22", "refers to itself"),
        ("const A = B; const B = A;", "1:24", "defined in terms of itself"),
        ("struct s { int x[-1]; };", "1:18", "array length -1 is outside"),
        ("union u switch (string s<>) { default: void; };", "1:17", "discriminant must be"),
        ("union u switch (int k) { case 1: int a; case 1: int b; };", "1:46", "duplicate case 1"),
        ("enum e { A = 1 }; union u switch (e k) { case 2: void; };", "1:47", "not a member"),
        ("union u switch (bool b) { case 2: void; };", "1:32", "not a bool value"),
        ("struct s { int class_; int class; };", "1:24", "clashes with another after renaming"),
        ("const T = 1; struct s { T x; };", "1:25", "'T' is a constant, not a type"),
        ("enum e { A = 0x80000000 };", "1:10", "outside the int range"),
        ("struct loop { loop x; };", "1:1", "has no finite encoding"),
    ],
)
def test_semantic_errors(text: str, where: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(text, filename="sem.x")
    assert str(info.value).startswith(f"sem.x:{where}: "), str(info.value)
    assert reason in str(info.value)
