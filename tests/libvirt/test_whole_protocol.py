"""libvirt's whole remote program from libvirt 9.0's own remote_protocol.x (issue 10):
every procedure known, the built-in subset wire-identical to it, calls to a real libvirtd
by name."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from realpeers import Libvirtd

from xdrstream.codec import model
from xdrstream.codec.cheaders import c_constants
from xdrstream.fuzz.values import random_value
from xdrstream.libvirt import LibvirtClient, LibvirtError
from xdrstream.libvirt import protocol as protocols

VALUES_PER_TYPE = 50


def test_the_whole_program_is_known(real: protocols.RemoteProtocol, tree: Path) -> None:
    text = (tree / protocols.TREE_SCHEMA).read_text()
    assert len(real.procedures) == text.count("    REMOTE_PROC_") == 443
    info = real.procedure("DOMAIN_GET_INFO")
    assert (info.number, info.arg_type, info.result_type) == (
        16,
        "remote_domain_get_info_args",
        "remote_domain_get_info_ret",
    )
    assert real.procedure("REMOTE_PROC_DOMAIN_EVENT_LIFECYCLE").event
    upload = real.procedure("STORAGE_VOL_UPLOAD").stream
    assert upload is not None and upload.direction.value == "upload" and upload.sparse
    # every _args/_ret/_msg type of the files belongs to a procedure
    programs = [real, *real.companions.values()]  # qemu_protocol.x, lxc_protocol.x
    used = {
        t for r in programs for p in r.procedures.values() for t in (p.arg_type, p.result_type) if t
    }
    declared = {n for n in real.schema.model.types if n.endswith(("_args", "_ret", "_msg"))}
    assert declared <= used


def test_header_constants_are_libvirts(tree: Path) -> None:
    values = protocols.header_constants(tree / protocols.TREE_HEADERS)
    assert values["VIR_UUID_BUFLEN"] == 16
    assert values["VIR_SECURITY_LABEL_BUFLEN"] == 4097
    assert values["VIR_TYPED_PARAM_STRING"] == 7


def test_builtin_subset_is_wire_identical(real: protocols.RemoteProtocol) -> None:
    """Same number and name for every procedure of libvirt_remote.x, and its argument and
    result types encode generated values exactly as the real file's types do, both ways."""
    builtin = protocols.builtin()
    rng = random.Random(10)
    for proc in builtin.procedures.values():
        theirs = real.procedure(proc.number)
        assert theirs.name == proc.name
        assert (theirs.stream is None) == (proc.stream is None), proc.name
        for ours_t, theirs_t in (
            (proc.arg_type, theirs.arg_type),
            (proc.result_type, theirs.result_type),
        ):
            assert (ours_t is None) == (theirs_t is None), proc.name
            if ours_t is None or theirs_t is None:
                continue
            for _ in range(VALUES_PER_TYPE):
                for a, b in ((builtin, real), (real, builtin)):
                    t = ours_t if a is builtin else theirs_t
                    u = theirs_t if a is builtin else ours_t
                    data = a.codec(t).pack(random_value(a.schema, a.schema.xtype(t), rng))
                    assert b.codec(u).pack(b.codec(u).unpack(data)) == data, (proc.name, t)


def test_builtin_subset_names_are_libvirts(real: protocols.RemoteProtocol, tree: Path) -> None:
    """Every constant and enum member of libvirt_remote.x has libvirt's name and value: in
    remote_protocol.x, as a REMOTE_PROC_* number, or in the C headers libvirt takes it from;
    every field and enum member of an argument or result is named as libvirt names it."""
    builtin = protocols.builtin()
    headers = protocols.header_constants(tree / protocols.TREE_HEADERS)
    headers |= c_constants([(tree / "src" / "libvirt_internal.h").read_text()])  # VIR_DRV_*
    theirs = real.schema.constants
    for name, value in builtin.schema.constants.items():
        if name in builtin.procedures:
            assert theirs.get(protocols.PREFIX + name) == value, name
        elif name in theirs:
            assert theirs[name] == value, name
        else:
            assert headers.get(name) == value, f"{name}: not libvirt's name"

    def same(ours: model.XType, real_t: model.XType, path: str) -> None:
        if isinstance(ours, model.Struct):
            assert isinstance(real_t, model.Struct), path
            assert [f.name for f in ours.fields] == [f.name for f in real_t.fields], path
            for a, b in zip(ours.fields, real_t.fields, strict=True):
                same(a.type, b.type, f"{path}.{a.name}")
        elif isinstance(ours, model.Array | model.Optional):
            assert isinstance(real_t, model.Array | model.Optional), path
            same(ours.element, real_t.element, path)
        elif isinstance(ours, model.Enum):
            assert isinstance(real_t, model.Enum), path
            assert (ours.name, ours.members) == (real_t.name, real_t.members), path

    for proc in builtin.procedures.values():
        other = real.procedure(proc.number)
        for ours_t, theirs_t in (
            (proc.arg_type, other.arg_type),
            (proc.result_type, other.result_type),
        ):
            if ours_t is not None and theirs_t is not None:
                same(builtin.schema.xtype(ours_t), real.schema.xtype(theirs_t), ours_t)


@pytest.mark.real_peers
@pytest.mark.timeout(60)
def test_call_any_procedure_of_a_real_libvirtd(
    daemon: Libvirtd, real: protocols.RemoteProtocol
) -> None:
    uri = daemon.uri("test")
    with LibvirtClient.open(uri, protocol=real) as client:
        dom = client.call("DOMAIN_LOOKUP_BY_NAME", name="test").dom
        info = client.call("DOMAIN_GET_INFO", dom=dom)
        assert info.nrVirtCpu >= 1 and info.maxMem > 0
        assert "<domain" in client.call("DOMAIN_GET_XML_DESC", dom=dom, flags=0).xml
        assert client.call("CONNECT_GET_HOSTNAME").hostname
        assert client.call("NODE_GET_INFO").cpus >= 1
        caps = client.call("CONNECT_GET_CAPABILITIES").capabilities
        assert "<capabilities>" in caps
        listed = client.call("CONNECT_LIST_ALL_DOMAINS", need_results=1, flags=0)
        assert "test" in [d.name for d in listed.domains]
        with pytest.raises(LibvirtError) as missing:
            client.call("DOMAIN_LOOKUP_BY_NAME", name="no-such-domain")
        assert missing.value.code == 42  # VIR_ERR_NO_DOMAIN


CAPTURES = Path(__file__).parents[1] / "fixtures" / "libvirt"


def test_decode_names_every_procedure_and_decodes_every_body(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``xdrstream decode --libvirt-schemas TREE`` on every committed real capture."""
    import json

    from xdrstream.cli import main

    captures = sorted(CAPTURES.glob("*.pcapng"))
    assert captures
    for capture in captures:
        assert (
            main(["decode", "--format", "json", "--libvirt-schemas", str(tree), str(capture)]) == 0
        )
        messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert messages, capture
        for message in messages:
            if message["program"] == protocols.builtin().program:
                assert message["procedure_name"], (capture.name, message)
                assert "body_error" not in message, (capture.name, message)


def test_storage_server_and_client_on_the_real_schema(
    real: protocols.RemoteProtocol, tmp_path: Path
) -> None:
    """Both sides speak libvirt's own remote_protocol.x: handlers and calls go by name."""
    from xdrstream.libvirt.storage_server import StorageServer

    directory = tmp_path / "images"
    directory.mkdir()
    (directory / "vol1").write_bytes(b"")
    source, out = tmp_path / "in", tmp_path / "out"
    source.write_bytes(bytes(range(256)) * 4099)
    sock = tmp_path / "sock"
    server = StorageServer(f"unix:{sock}", directory, protocol=real)
    with server, LibvirtClient.open(f"unix:{sock}", protocol=real) as client:
        assert client.protocol is not protocols.builtin(lenient=True)
        vol = client.lookup_volume("images", "vol1")
        assert type(vol).__name__ == "remote_nonnull_storage_vol"
        client.upload(vol, source)
        client.download(vol, out)
        assert client.volume_info(vol).capacity == source.stat().st_size
        with pytest.raises(LibvirtError) as unknown:  # in the program, not served here
            client.call("DOMAIN_GET_INFO", dom={"name": "x", "uuid": bytes(16), "id": 1})
        assert "unknown procedure" in str(unknown.value)
    assert out.read_bytes() == source.read_bytes()


def test_qemu_and_lxc_programs_are_loaded(real: protocols.RemoteProtocol) -> None:
    qemu, lxc = real.companions["qemu"], real.companions["lxc"]
    assert (qemu.program, qemu.version, lxc.program) == (0x20008087, 1, 0x00068000)
    program, command = real.resolve("QEMU_PROC_DOMAIN_MONITOR_COMMAND")
    assert program is qemu and command.number == 1
    assert command.arg_type == "qemu_domain_monitor_command_args"
    assert qemu.procedure("DOMAIN_MONITOR_EVENT").event
    assert "domain:write" in command.annotations["acl"]
    assert lxc.procedure("LXC_PROC_DOMAIN_OPEN_NAMESPACE").number == 1
    assert real.resolve("DOMAIN_GET_INFO")[0] is real  # unprefixed: the remote program
    assert len(qemu.procedures) == 7 and len(lxc.procedures) == 1


@pytest.mark.real_peers
@pytest.mark.timeout(60)
def test_call_qemu_program_procedures(daemon: Libvirtd, real: protocols.RemoteProtocol) -> None:
    """QEMU_PROGRAM's monitor-event registration on qemu:///session (the daemon's qemu
    driver answers it: a callback id), and its monitor command on test:/// (reaches the
    program: the test driver says it does not support it, not "unknown program")."""
    with LibvirtClient.open(daemon.uri("qemu"), protocol=real) as client:
        registered = client.call(
            "QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_REGISTER", dom=None, event=None, flags=0
        )
        client.call(
            "QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER",
            callbackID=registered.callbackID,
        )
        assert client.call("CONNECT_GET_TYPE").type == "QEMU"  # the remote program still
    with LibvirtClient.open(daemon.uri("test"), protocol=real) as client:
        dom = client.call("DOMAIN_LOOKUP_BY_NAME", name="test").dom
        with pytest.raises(LibvirtError) as unsupported:
            client.call("QEMU_PROC_DOMAIN_MONITOR_COMMAND", dom=dom, cmd="info status", flags=0)
        assert unsupported.value.code == 3, unsupported.value  # VIR_ERR_NO_SUPPORT
        assert "virDomainQemuMonitorCommand" in str(unsupported.value)
