"""libtirpc's type names and <rpc/*.h> constants (issue 17): built in with their routines'
wire encoding and range, redefinable with the same encoding, opt-in constants."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdrstream.codec import (
    RPC_CONSTANTS,
    DecodeError,
    EncodeError,
    SchemaError,
    compile_schema,
)


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


# name -> (struct format of its wire word(s), lowest, highest)
NAMES = {
    "uint32_t": ("I", 0, 2**32 - 1),
    "u_int32_t": ("I", 0, 2**32 - 1),
    "u_int": ("I", 0, 2**32 - 1),
    "int32_t": ("i", -(2**31), 2**31 - 1),
    "uint64_t": ("Q", 0, 2**64 - 1),
    "u_int64_t": ("Q", 0, 2**64 - 1),
    "u_quad_t": ("Q", 0, 2**64 - 1),
    "int64_t": ("q", -(2**63), 2**63 - 1),
    "quad_t": ("q", -(2**63), 2**63 - 1),
    "u_char": ("I", 0, 255),
    "u_short": ("I", 0, 65535),
    "u_long": ("I", 0, 2**32 - 1),
    "long": ("i", -(2**31), 2**31 - 1),
    "unsigned long": ("I", 0, 2**32 - 1),
    "rpcprog_t": ("I", 0, 2**32 - 1),
    "rpcvers_t": ("I", 0, 2**32 - 1),
    "rpcproc_t": ("I", 0, 2**32 - 1),
    "rpcprot_t": ("I", 0, 2**32 - 1),
    "rpcport_t": ("I", 0, 2**32 - 1),
}


@pytest.mark.parametrize("name", list(NAMES))
def test_libtirpc_integer_names(name: str) -> None:
    fmt, lo, hi = NAMES[name]
    schema = compile_schema(f"struct s {{ {name} v; {name} many<2>; }};\n", "nfs.x")
    S = schema["s"]
    for value in (lo, hi):
        data = be(fmt, value) + be("I", 1) + be(fmt, value)
        assert S.pack(S(v=value, many=[value])) == data
        assert S.unpack(data) == S(v=value, many=[value])
    for bad in (lo - 1, hi + 1):
        with pytest.raises(EncodeError, match=r"^s\.v: .*outside the range"):
            S.pack(S(v=bad, many=[]))
    if fmt in "iI" and (lo, hi) not in ((0, 2**32 - 1), (-(2**31), 2**31 - 1)):
        with pytest.raises(DecodeError, match=r"^s\.v at byte offset 0: \d+ is outside"):
            S.unpack(be("I", hi + 1) + be("I", 0))


def test_netobj_authsys_parms_des_block() -> None:
    schema = compile_schema(
        "struct nlm_lock { netobj fh; authsys_parms cred; des_block key; };\n", "nlm.x"
    )
    L = schema["nlm_lock"]
    A = schema["authsys_parms"]
    cred = A(stamp=7, machinename="host", uid=0, gid=100, gids=[1, 2])
    value = L(fh=b"\x01\x02\x03", cred=cred, key=bytes(range(8)))
    expected = (
        be("I", 3)
        + b"\x01\x02\x03\0"
        + be("II", 7, 4)
        + b"host"
        + be("IIII", 0, 100, 2, 1)
        + be("I", 2)
        + bytes(range(8))
    )
    assert L.pack(value) == expected
    assert L.unpack(expected) == value
    with pytest.raises(EncodeError, match=r"nlm_lock\.fh: length 1025 exceeds the bound 1024"):
        L.pack(L(fh=bytes(1025), cred=cred, key=bytes(8)))  # MAX_NETOBJ_SZ
    with pytest.raises(EncodeError, match=r"gids: 17 elements exceed the bound 16"):
        L.pack(L(fh=b"", cred=A(0, "", 0, 0, list(range(17))), key=bytes(8)))
    with pytest.raises(EncodeError, match=r"machinename: length 256 exceeds the bound 255"):
        L.pack(L(fh=b"", cred=A(0, "x" * 256, 0, 0, []), key=bytes(8)))


def test_netbuf_is_maxlen_then_bytes() -> None:
    # rpcb_prot.x's struct netbuf: xdr_netbuf encodes maxlen, then the bytes as opaque<>.
    schema = compile_schema("struct rpcb_entry { struct netbuf addr; };\n", "rpcb.x")
    E, N = schema["rpcb_entry"], schema["netbuf"]
    data = be("II", 16, 3) + b"abc\0"
    assert E.pack(E(addr=N(maxlen=16, buf=b"abc"))) == data
    assert E.unpack(data) == E(addr=N(maxlen=16, buf=b"abc"))
    with pytest.raises(DecodeError, match=r"rpcb_entry\.addr"):
        E.unpack(data[:-1])


def test_builtins_only_join_the_schemas_that_use_them() -> None:
    schema = compile_schema("typedef int x;\n", "x.x")
    assert "uint32_t" not in schema and "authsys_parms" not in schema


def test_redefinition_with_the_same_wire_format_is_accepted() -> None:
    # RFC 7531's nfs4_prot.x and NFS-Ganesha's nlm4.x define these themselves.
    text = (
        "typedef unsigned int uint32_t;\ntypedef unsigned hyper uint64_t;\n"
        "typedef opaque netobj<1024>;\nstruct s { uint32_t a; uint64_t b; };\n"
    )
    S = compile_schema(text, "nfs4_prot.x")["s"]
    assert S.pack(S(a=1, b=2)) == be("IQ", 1, 2)
    # libnfs's nfs4.x defines RFC 5531's struct itself.
    own = (
        "struct authsys_parms {\n unsigned int stamp; string machinename<255>;\n"
        " unsigned int uid; unsigned int gid; unsigned int gids<16>;\n};\n"
    )
    A = compile_schema(own, "libnfs_nfs4.x")["authsys_parms"]
    assert A.pack(A(1, "h", 2, 3, [4])) == be("II", 1, 1) + b"h\0\0\0" + be("IIII", 2, 3, 1, 4)
    with pytest.raises(SchemaError, match=r"^bad\.x:1:1: 'authsys_parms' is libtirpc's type"):
        compile_schema(own.replace("gids<16>", "gids<17>"), "bad.x")


def test_redefinition_with_another_wire_format_names_both() -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema("\ntypedef int uint32_t;\n", "bad.x")
    assert str(info.value) == (
        "bad.x:2:1: 'uint32_t' is libtirpc's type (xdr_uint32_t: unsigned int); "
        "this definition (int) encodes differently"
    )


def test_rpc_constants_are_opt_in() -> None:
    text = "const FLAVORS = AUTH_SYS;\nenum flavor { F_GSS = RPCSEC_GSS, F_NONE = AUTH_NONE };\n"
    with pytest.raises(SchemaError) as info:
        compile_schema(text, "nfsv41.x")
    assert str(info.value).startswith("nfsv41.x:1:17: undefined constant 'AUTH_SYS'\n")
    assert "AUTH_SYS, RPCSEC_GSS, AUTH_NONE: libtirpc's <rpc/*.h> constants" in str(info.value)
    with pytest.raises(SchemaError) as info:  # one undefined name: resolution's own message
        compile_schema("enum flavor { F_GSS = RPCSEC_GSS };\n", "nfsv41.x")
    assert str(info.value).startswith("nfsv41.x:1:23: undefined constant 'RPCSEC_GSS': it is ")
    assert "rpc_constants=True" in str(info.value) and "--rpc-constants" in str(info.value)
    schema = compile_schema(text, "nfsv41.x", rpc_constants=True)
    assert schema.constants["FLAVORS"] == 1
    assert schema["flavor"].F_GSS == 6 and schema["flavor"].F_NONE == 0
    assert {k: RPC_CONSTANTS[k] for k in ("AUTH_NONE", "AUTH_SYS", "AUTH_SHORT", "AUTH_DH")} == {
        "AUTH_NONE": 0,
        "AUTH_SYS": 1,
        "AUTH_SHORT": 2,
        "AUTH_DH": 3,
    }
    # A schema that defines one itself (libnfs: enum auth_flavor) keeps its own.
    own = compile_schema(
        "enum auth_flavor { AUTH_NONE = 0, AUTH_SYS = 1, AUTH_DH = 7 };\nconst X = AUTH_DH;\n",
        "libnfs.x",
        rpc_constants=True,
    )
    assert own.constants["X"] == 7


def test_cli_rpc_constants(tmp_path: Path) -> None:
    source = tmp_path / "flavor.x"
    source.write_text("const F = AUTH_SYS;\n", encoding="utf-8")
    command = [sys.executable, "-m", "xdrstream.cli", "compile", str(source)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "--rpc-constants" in refused.stderr
    module = tmp_path / "flavor_mod.py"
    accepted = subprocess.run(
        [*command, "--rpc-constants", "-o", str(module)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert accepted.returncode == 0, accepted.stderr
    # The written module rebuilds its schema with the same option.
    check = "import flavor_mod; print(flavor_mod.SCHEMA.constants['F'])"
    imported = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert imported.stdout.strip() == "1", imported.stderr
