"""The C readers the real-schema tests rely on (the codec's C constant reader, this
directory's initializer reader), on inputs that show their rules (a wrong constant or value
there would make the real-file tests prove the wrong thing)."""

from __future__ import annotations

from c_header_constants import referenced
from c_initializers import Brace, Converter, Name, Ref, read_cases, read_value

from xdrstream.codec import compile_schema
from xdrstream.codec.cheaders import c_constants, passed_through_constants


def test_c_constants_defines_enums_and_expressions() -> None:
    header = (
        "#ifdef LINUX\n# define PATH_MAX 108 /* first wins */\n#else\n#define PATH_MAX 104\n"
        "#endif\n#define BUF (4096 + 1)\n#define HEX 0x10U\n#define OCT 010\n"
        '#define SHIFTED (HEX << 2 | 1)\n#define FN(x) (x)\n#define TEXT "s"\n'
        "typedef enum {\n  A = 1, /* one */\n  B,\n# ifdef SENTINELS\n  C_LAST\n# endif\n} e;\n"
        "enum { D = BUF - 1, E };\n#define LATER (EARLY * 2)\n#define EARLY 3\n"
    )
    assert c_constants([header]) == {
        "PATH_MAX": 108,
        "BUF": 4097,
        "HEX": 16,
        "OCT": 8,
        "SHIFTED": 65,
        "A": 1,
        "B": 2,
        "C_LAST": 3,
        "D": 4096,
        "E": 4097,
        "LATER": 6,
        "EARLY": 3,
    }


def test_referenced_keeps_what_the_x_file_uses_and_does_not_define() -> None:
    x_text = (
        "/* BUF in a comment */\nconst OWN = 3;\n%#define PASSED 7\n"
        "struct s { opaque a[UUID]; int b<PASSED>; };\n"
        "program PROG { version V { void P(void) = 1; } = 1; } = 9;\n"
    )
    known = {"UUID": 16, "BUF": 1, "OWN": 3, "PROG": 5, "V": 1, "P": 2}
    known.update(passed_through_constants(x_text))
    assert referenced(known, x_text) == {"UUID": 16, "PASSED": 7}


def test_c_initializer_reader_and_conversion() -> None:
    assert read_value('{ .a = -1, .b = { 1, 2 }, .c = &x, .d = NULL, .e = (char *)"s" }', {}) == (
        Brace(
            (
                ("a", -1),
                ("b", Brace(((None, 1), (None, 2)))),
                ("c", Ref("x")),
                ("d", None),
                ("e", "s"),
            )
        )
    )
    source = """
#define INIT (S) { .c = 'a' }
static void test_one(void)
{
    int ip = 7;
    T vorig = { .s = INIT, .p = &ip, .v = { .v_len = 3, .v_val = (int[]) { 1, 2 } },
                .u = { .k = 2, .U_u = { .two = -1 } }, .f = 0.1, .e = E_ONE };
    g_auto(T) vnew = {0};

    test_xdr((xdrproc_t)xdr_T, &vorig, &vnew, "one", false);
}
"""
    (case,) = read_cases(source)
    assert (case.type_name, case.golden, case.fail, case.locals["ip"]) == ("T", "one", False, 7)
    schema = compile_schema(
        "enum E { E_ONE = 1 }; struct S { char c; unsigned hyper h; };"
        "union U switch (int k) { case 2: int two; default: void; };"
        "struct T { S s; int *p; int v<5>; U u; float f; E e; E fixed[2]; };"
    )
    converter = Converter(schema, case.locals)
    value = converter.convert(schema.xtype("T"), case.value)
    T, S, U = schema["T"], schema["S"], schema["U"]
    assert value == T(
        s=S(c=97, h=0),
        p=7,
        v=[1, 2, 0],  # _len 3 with 2 given: C's zero for the rest
        u=U(2, -1),
        f=0.10000000149011612,  # rounded to single precision, as C's float
        e=1,
        fixed=[0, 0],  # zero-filled: no E member
    )
    assert converter.undeclared_enums == 2
    assert isinstance(read_value("E_ONE", {}), Name)
