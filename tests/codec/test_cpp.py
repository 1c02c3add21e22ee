"""Preprocessing like rpcgen (issue 10): files with ``#`` lines go through pcpp with
rpcgen's defines, ``-D`` and ``-I``; errors still name the original file:line:col."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdrstream.codec import EncodeError, SchemaError, compile_schema, load_schema
from xdrstream.codec.cpp import RPCGEN_DEFINES, needs_preprocessing


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_only_text_with_directives_is_preprocessed() -> None:
    assert needs_preprocessing("const A = 1;\n  #define B 2\n")
    assert not needs_preprocessing("const A = 1; /* # not a directive */\n%#include <x.h>\n")


def test_defines_and_conditionals_like_rpcgen() -> None:
    # rpcgen defines RPC_HDR for the header and RPC_XDR for the XDR routines: the types of
    # both are in the schema; RPC_SVC's (server stubs) are not.
    assert {"RPC_HDR", "RPC_XDR"} <= set(RPCGEN_DEFINES)
    text = (
        "#define MAXLEN 8\n"
        "#ifdef RPC_HDR\n%#include <foo.h>\nconst HDR = 1;\n#endif\n"
        "#if RPC_XDR\nconst XDR = 2;\n#endif\n"
        "#ifdef RPC_SVC\nconst SVC = 3;\n#endif\n"
        "#if LEVEL > 1\nconst DEEP = LEVEL;\n#else\nconst SHALLOW = 0;\n#endif\n"
        "typedef string name_t<MAXLEN>;\n"
    )
    schema = compile_schema(text, "cond.x", constants={"LEVEL": 2})
    assert {k: schema.constants[k] for k in ("HDR", "XDR", "DEEP")} == {
        "HDR": 1,
        "XDR": 2,
        "DEEP": 2,
    }
    assert "SVC" not in schema.constants and "SHALLOW" not in schema.constants
    with pytest.raises(EncodeError, match="length 9 exceeds the bound 8"):
        schema["name_t"].pack("x" * 9)
    assert "SHALLOW" in compile_schema(text, "cond.x").constants


def test_includes_and_positions(tmp_path: Path) -> None:
    inc = tmp_path / "inc"
    write(inc / "common.x", "const INC = 2;\n\ntypedef opaque blob<INC>;\n")
    write(tmp_path / "local.x", "typedef int local_t;\n")
    main = write(
        tmp_path / "main.x",
        '#include "common.x"\n#include "local.x"\n/* comment */\n'
        "struct s { blob b; local_t l; };\n",
    )
    schema = load_schema(main, include=[inc])
    S = schema["s"]
    assert S.pack(S(b=b"ab", l=-1)) == be("I", 2) + b"ab\0\0" + be("i", -1)
    # The error after the includes names the main file and its own line.
    bad = write(tmp_path / "bad.x", '#include "local.x"\n\nstruct t {\n    nope_t n;\n};\n')
    with pytest.raises(SchemaError, match=re.escape(f"{bad}:4:5: undefined type 'nope_t'")):
        load_schema(bad)
    # An error inside an included file names that file and line.
    write(inc / "broken.x", "const A = 1;\nstruct { };\n")
    uses = write(tmp_path / "uses.x", '\n#include "broken.x"\n')
    with pytest.raises(SchemaError, match=r"broken\.x:2:8: expected a struct name"):
        load_schema(uses, include=[inc])
    with pytest.raises(SchemaError, match=re.escape(f"{uses}:2:1: preprocessor: #include")):
        load_schema(uses)  # without -I the include is not found
    with pytest.raises(SchemaError, match=r"'broken\.x' not found"):
        load_schema(uses)


def test_annotations_survive_preprocessing() -> None:
    text = (
        "#define PROC 3\n"
        "program P { version V {\n"
        "  /**\n   * @generate: both\n   * @acl: domain:read\n   */\n"
        "  int GET(void) = PROC;\n"
        "} = 1; } = 0x20000001;\n"
    )
    proc = compile_schema(text, "annot.x").programs["P"].versions[1].procedures[3]
    assert dict(proc.annotations) == {"generate": "both", "acl": "domain:read"}


def test_cli_include_dir_and_define(tmp_path: Path) -> None:
    write(tmp_path / "hdr" / "sizes.x", "#ifndef SIZE\n#define SIZE 4\n#endif\n")
    main = write(tmp_path / "m.x", '#include "sizes.x"\ntypedef int ints[SIZE];\n')
    for extra, size in (([], 4), (["-D", "SIZE=2"], 2)):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "xdrstream.cli",
                "compile",
                str(main),
                "-I",
                str(tmp_path / "hdr"),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert f"int ints[{size}]" in result.stdout  # the preprocessed text in _SOURCES


def test_unpreprocessed_directive_in_the_lexer_is_explained() -> None:
    from xdrstream.codec.lexer import tokenize

    with pytest.raises(SchemaError, match=r"^f\.x:2:1: preprocessor line"):
        tokenize("const A = 1;\n#define B 2\n", "f.x")


RPCSVC = Path("/usr/include/rpcsvc")
# What each file needs beyond itself, as rpcgen's users give it (constants of the C headers
# the file's % lines include; files it uses the types of).
RPCSVC_FILES: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "rstat.x": ((), {}),
    "rusers.x": ((), {}),
    "yp.x": ((), {}),
    "bootparam_prot.x": ((), {}),
    "key_prot.x": ((), {"MAXNETNAMELEN": 255}),
    "nlm_prot.x": ((), {"LM_MAXSTRLEN": 1024, "MAXNAMELEN": 1025}),
    "nis_callback.x": (("nis.x",), {}),
    "nfs_prot.x": ((), {}),
    "mount.x": ((), {}),
}


@pytest.mark.parametrize("name", list(RPCSVC_FILES))
def test_rpcsvc_files_compile(name: str) -> None:
    if not (RPCSVC / name).exists():
        pytest.skip(f"{RPCSVC / name} is not installed (libc6-dev / libtirpc-dev)")
    before, constants = RPCSVC_FILES[name]
    schema = load_schema([RPCSVC / b for b in before] + [RPCSVC / name], constants=constants)
    assert len(schema) > 0
    if name == "key_prot.x":
        assert schema.constants["HEXMODULUS"] == "d4a0ba0250b6fd2ec626e7efd637df76c716e22d0944b88b"
        assert len(str(schema.constants["HEXMODULUS"])) == schema.constants["HEXKEYBYTES"]
    if name == "rusers.x":  # char ut_line[8] etc. under #ifdef: arrays of 4-byte words
        assert schema.programs
