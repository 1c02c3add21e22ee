"""A schema's undefined names are reported together, each at its first use
(file:line:column), with one hint for all; a single one keeps resolution's own message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sources import debian_source

from xdrstream.cli import main
from xdrstream.codec import SchemaError, compile_schema

SCHEMA = """\
struct a {
  opaque u[UUID_LEN];
  int x[MAXX];
  gf_iatt st;
  int y[MAXX];
};
union b switch (int k) { case KIND_A: int v; case 2: void; };
"""


def test_every_undefined_name_at_once_each_at_its_first_use() -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(SCHEMA, "a.x")
    lines = str(info.value).splitlines()
    assert lines[:4] == [
        "a.x:2:12: undefined constant 'UUID_LEN'",
        "a.x:3:9: undefined constant 'MAXX'",  # once: line 5's use is not repeated
        "a.x:4:3: undefined type 'gf_iatt'",
        "a.x:7:31: undefined constant 'KIND_A'",
    ]
    assert lines[4].startswith("4 undefined names: ") and len(lines) == 5
    assert "-D UUID_LEN=... -D MAXX=... -D KIND_A=..." in lines[4]
    assert "compiled together with the file that defines it" in lines[4]
    assert (info.value.line, info.value.col) == (2, 12)  # the first one's place
    # given the constants, the type is the one left: resolution's own, fuller message
    with pytest.raises(SchemaError, match=r"^a\.x:4:3: undefined type 'gf_iatt': rpcgen"):
        compile_schema(SCHEMA, "a.x", constants={"UUID_LEN": 16, "MAXX": 4, "KIND_A": 1})


def test_libvirts_remote_protocol_without_its_constants_names_them_all(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real file a new user tries first: libvirt's C header constants are not in it."""
    remote_x = debian_source("libvirt", "bookworm") / "src/remote/remote_protocol.x"
    assert main(["compile", str(remote_x), "-o", "/dev/null"]) == 1
    err = capsys.readouterr().err
    named = re.findall(rf"^(?:xdrstream compile: )?{re.escape(str(remote_x))}:\d+:\d+: "
                       r"undefined constant '(\w+)'$", err, re.M)  # fmt: skip
    assert {"VIR_UUID_BUFLEN", "VIR_SECURITY_MODEL_BUFLEN", "VIR_TYPED_PARAM_STRING"} <= set(named)
    assert len(named) == len(set(named)) >= 10, err
    assert f"{len(named)} undefined names: " in err


def test_the_cli_shows_the_list_one_name_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "two: names.x"  # a ': ' in the file's name is not a separator
    schema.write_text("struct s { int x[N]; opaque y[M]; };\n")
    assert main(["compile", str(schema)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"xdrstream compile: {schema}:1:18: undefined constant 'N'"
    assert err[1] == f"{schema}:1:31: undefined constant 'M'"
