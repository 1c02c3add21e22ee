"""endpoints/migration.py without QEMU: hand-built streams of QEMU 7.2's real format, each
rule of the parser broken once (the differential against real QEMU is test_qemu_differential).
"""

from __future__ import annotations

import json
import struct

import pytest

from xdrstream.endpoints.migration import (
    FIELD_VALUES_LIMIT,
    MigrationError,
    MigrationParser,
    Summary,
)

PAGE = 4096


def be32(value: int) -> bytes:
    return struct.pack(">I", value)


def be64(value: int) -> bytes:
    return struct.pack(">Q", value)


def start(kind: int, sid: int, idstr: bytes, version: int) -> bytes:
    return bytes([kind]) + be32(sid) + bytes([len(idstr)]) + idstr + be32(0) + be32(version)


def footer(sid: int) -> bytes:
    return b"\x7e" + be32(sid)


VMDESC = {
    "page_size": PAGE,
    "devices": [
        {
            "name": "dev",
            "instance_id": 0,
            "vmsd_name": "dev",
            "version": 1,
            "fields": [
                {"name": "a", "type": "uint32", "size": 4},
                {"name": "b", "type": "buffer", "size": 3, "array_len": 2},
            ],
            "subsections": [
                {
                    "vmsd_name": "dev/sub",
                    "version": 1,
                    "fields": [{"name": "c", "type": "uint8", "size": 1}],
                }
            ],
        }
    ],
}

HEAD = b"QEVM" + be32(3) + b"\x07" + be32(13) + b"pc-i440fx-7.2"
RAM_START = (
    start(1, 2, b"ram", 4)
    + be64(2 * PAGE | 0x04)
    + b"\x06pc.ram"
    + be64(2 * PAGE)
    + be64(0x10)
    + footer(2)
)
FIRST_PAGE = be64(0x08) + b"\x06pc.ram" + bytes(range(256)) * 16
ZERO_PAGE = be64(PAGE | 0x22) + b"\x00"
RAM_END = b"\x03" + be32(2) + FIRST_PAGE + ZERO_PAGE + be64(0x10) + footer(2)
DEVICE_BODY = be32(7) + b"abcdef" + b"\x05\x07dev/sub" + be32(1) + b"\x09"
DEVICE = start(4, 3, b"dev", 1) + DEVICE_BODY + footer(3)


def tail(vmdesc: dict[str, object] = VMDESC) -> bytes:
    text = json.dumps(vmdesc).encode()
    return b"\x00\x06" + be32(len(text)) + text


STREAM = HEAD + RAM_START + RAM_END + DEVICE + tail()


def parse(data: bytes, step: int = 0, **options: object) -> Summary:
    parser = MigrationParser(**options)  # type: ignore[arg-type]
    for at in range(0, len(data), step or len(data) or 1):
        parser.feed(data[at : at + (step or len(data))])
    return parser.finish()


def rejection(data: bytes, **options: object) -> MigrationError:
    with pytest.raises(MigrationError) as info:
        parse(data, **options)
    return info.value


@pytest.mark.parametrize("step", [0, 1, 7, 4096])
def test_a_well_formed_stream_is_accepted_however_it_is_split(step: int) -> None:
    summary = parse(STREAM, step)
    assert summary.machine == "pc-i440fx-7.2"
    assert summary.blocks == {"pc.ram": 2 * PAGE}
    assert (summary.pages, summary.zero_pages, summary.devices) == (1, 1, 1)
    # held from the end of the first device section's header (its length is in the vmdesc)
    assert summary.held_bytes == len(DEVICE + tail()) - len(start(4, 3, b"dev", 1))


def test_a_stream_without_configuration_or_footers_is_accepted() -> None:
    # machine types before 2.4 send neither (their first footer place holds a section type)
    old = HEAD[:8] + RAM_START[:-5] + RAM_END[:-5] + DEVICE[:-5] + tail()
    assert parse(old).machine is None


def test_start_and_full_part_and_end_are_interchangeable_as_in_qemu() -> None:
    swapped = HEAD + b"\x04" + RAM_START[1:] + b"\x02" + RAM_END[1:] + b"\x01" + DEVICE[1:]
    assert parse(swapped + tail()).devices == 1


def patched(old: bytes, new: bytes, data: bytes = STREAM) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"QEVX" + STREAM[4:], "not a migration stream: magic 0x51455658"),
        (STREAM[:4] + be32(2) + STREAM[8:], "stream version 2 is obsolete"),
        (patched(start(1, 2, b"ram", 4), start(1, 2, b"ram", 5)), "RAM section version 5"),
        (patched(footer(3), footer(4)), "section footer id 4, expected 3 in the footer of FULL"),
        (patched(footer(3), b"\x7f" + be32(3)), "missing section footer: 0x7f"),
        (patched(b"\x03" + be32(2), b"\x03" + be32(9)), "END of section id 9, which no START"),
        (patched(b"\x03" + be32(2), b"\x09" + be32(2)), "unknown section type 0x09"),
        (patched(be64(PAGE | 0x22), be64(2 * PAGE | 0x22)), "page at 0x2000 outside RAM block"),
        (
            patched(b"\x06pc.ram" + bytes(range(8)), b"\x06pc.rom" + bytes(range(8))),
            "page of unknown RAM block 'pc.rom'",
        ),
        (patched(be64(0x08) + b"\x06", be64(0x28)), "CONTINUE page before any RAM block"),
        (patched(be64(PAGE | 0x22), be64(PAGE | 0x62)), "XBZRLE RAM page (flags 0x62)"),
        (patched(be64(PAGE | 0x22), be64(PAGE | 0x122)), "compressed RAM page (COMPRESS_PAGE"),
        (patched(be64(PAGE | 0x22), be64(PAGE | 0xA2)), "RAM_SAVE_FLAG_HOOK (flags 0xa2)"),
        (patched(be64(PAGE | 0x22), be64(PAGE | 0x2A)), "unknown combination of RAM flags 0x2a"),
        (patched(be64(2 * PAGE | 0x04), be64(PAGE | 0x04)), "RAM block 'pc.ram' of 0x2000 bytes"),
        (patched(b"\x05\x07dev/sub", b"\x05\x07dev/sux"), "subsection 'dev/sux', the vmdesc says"),
        (patched(DEVICE_BODY, DEVICE_BODY[:-1]), "missing section footer: 0x00, expected 0x7e"),
        (patched(DEVICE_BODY, DEVICE_BODY + b"\x00"), "missing section footer: 0x00"),
        (patched(start(4, 3, b"dev", 1), start(4, 3, b"deX", 1)), "section 'deX' instance 0"),
        (patched(start(4, 3, b"dev", 1), start(4, 3, b"dev", 2)), "section version 2, the vmdesc"),
        (STREAM + b"junk", "4 bytes after the vmdesc, which ends the stream"),
        (STREAM[:-1], "no complete vmdesc (QEMU_VM_VMDESCRIPTION JSON) ends the stream"),
        (HEAD + RAM_START + RAM_END + b"\x00\x07", "expected QEMU_VM_VMDESCRIPTION 0x06"),
        (HEAD + RAM_START + RAM_END + b"\x08\x00\x08\x00\x00", "MIG_CMD_ENABLE_COLO: postcopy"),
        (HEAD + b"\x08\x00\x02\x00\x04" + be32(1), "MIG_CMD_PING received with no return"),
        (HEAD + b"\x08\x00\x03\x00\x00" * 2, "MIG_CMD_POSTCOPY_ADVISE a second time"),
        (HEAD + b"\x08\x00\x03\x00\x10" + bytes(16), "the postcopy-ram capability is off"),
        (HEAD + b"\x08\x00\x0a\x00\x07\x09pc.ram", "MIG_CMD_RECV_BITMAP of length 7"),
        (HEAD[:8] + b"\x07" + be32(1) + b"x\x05\x00" + be32(1), "unknown configuration subsect"),
        (HEAD + RAM_START + RAM_END + b"\x08\x00\x63\x00\x00", "unknown migration command 0x63"),
    ],
)
def test_each_broken_rule_is_named_with_its_place(data: bytes, message: str) -> None:
    error = rejection(data)
    assert message in str(error)
    assert 0 <= error.offset <= len(data)


def test_truncation_anywhere_names_the_offset() -> None:
    for cut in range(0, len(HEAD + RAM_START + RAM_END), 97):
        error = rejection(STREAM[:cut])
        assert error.offset == cut, (cut, str(error))
        assert "truncated" in str(error)
    assert "PART" not in str(rejection(STREAM[: len(HEAD) + 30]))
    assert "in START section 2 'ram'" in str(rejection(STREAM[: len(HEAD) + 30]))


def test_device_state_is_held_only_up_to_the_bound() -> None:
    error = rejection(STREAM, hold_limit=64)
    assert "exceed the 64-byte bound held until the vmdesc arrives" in str(error)


def test_multifd_flush_is_qemu_8s_and_accepted_only_when_asked() -> None:
    data = patched(be64(0x10) + footer(2) + b"\x03", be64(0x200) + be64(0x10) + footer(2) + b"\x03")
    assert "MULTIFD_FLUSH (flags 0x200) is QEMU 8.0's" in str(rejection(data))
    assert parse(data, multifd_flush=True).pages == 1


def test_a_return_path_command_is_accepted() -> None:
    data = HEAD + b"\x08\x00\x01\x00\x00" + RAM_START + RAM_END + DEVICE + tail()
    assert parse(data).commands == 1


@pytest.mark.parametrize("step", [0, 1, 3])
def test_the_commands_a_restoring_qemu_accepts_are_accepted(step: int) -> None:
    # return path then ping, advise of length 0 once, resume (ignored), recv bitmap
    commands = b"\x08\x00\x01\x00\x00" + b"\x08\x00\x02\x00\x04" + be32(7)
    commands += b"\x08\x00\x03\x00\x00" + b"\x08\x00\x09\x00\x00"
    commands += b"\x08\x00\x0a\x00\x07\x06pc.ram"
    assert parse(HEAD + commands + RAM_START + RAM_END + DEVICE + tail(), step).commands == 5


@pytest.mark.parametrize("step", [0, 1])
def test_a_dirty_bitmap_section_is_read_chunk_by_chunk(step: int) -> None:
    chunks = b"\x1c\x05disk0\x02b0" + be32(0x10000) + b"\x01"  # device, bitmap, START
    chunks += b"\x44\x02b0" + be64(0) + be32(128) + be64(3) + b"abc"  # BITS, 3 bytes
    chunks += b"\x46\x02b0" + be64(128) + be32(128)  # BITS of ZEROES
    chunks += b"\x24\x02b0" + b"\x01"  # COMPLETE, then EOS
    section = start(1, 4, b"dirty-bitmap", 1) + chunks + footer(4)
    end = b"\x03" + be32(4) + b"\x01" + footer(4)
    data = HEAD + RAM_START + section + end + RAM_END + DEVICE + tail()
    assert parse(data, step).sections == 5
    cut = HEAD + RAM_START + section[:-6] + footer(4)  # no EOS: the footer read as a chunk
    assert "section 4 'dirty-bitmap'" in str(rejection(cut + end + RAM_END + DEVICE + tail()))
    big = patched(be64(3) + b"abc", be64(1 << 40) + b"abc", data)
    assert "dirty-bitmap chunk of 1099511627776 bytes exceeds" in str(rejection(big))


def test_a_vmdesc_with_a_bad_field_is_an_error_not_an_exception() -> None:
    bad = json.loads(json.dumps(VMDESC))
    bad["devices"][0]["fields"][0]["size"] = "four"
    data = HEAD + RAM_START + RAM_END + DEVICE + tail(bad)
    assert "vmdesc field 'a' has no valid size" in str(rejection(data))
    assert "without a 'devices' list" in str(
        rejection(HEAD + RAM_START + RAM_END + DEVICE + tail({}))
    )


@pytest.mark.parametrize("step", [4096, 4104, 5000, 65536, 262120])
def test_continue_pages_split_anywhere_are_counted_and_checked(step: int) -> None:
    from xdrstream.endpoints.qemu_stub import iter_real_format

    ram = 600 * PAGE  # three PART sections of CONTINUE pages
    data = b"".join(bytes(view) for view in iter_real_format(ram, 1))
    summary = parse(data, step)
    assert (summary.pages, summary.zero_pages) == (600, 0)
    # a cut inside a page body, wherever the chunks fall, is a truncation at the cut
    cut = len(data) // 2
    error = rejection(data[:cut])
    assert (error.offset, "truncated" in str(error)) == (cut, True)
    with pytest.raises(MigrationError, match="truncated") as info:
        parse(data[:cut], step)
    assert info.value.offset == cut
    # a page outside the block is caught on the fast path too
    at = data.index(struct.pack(">Q", 300 * PAGE | 0x28))
    bad = data[:at] + struct.pack(">Q", ram | 0x28) + data[at + 8 :]
    with pytest.raises(MigrationError, match=r"outside RAM block 'pc\.ram'") as info:
        parse(bad, step)
    assert info.value.offset == at


def _with_fields(fields: list[dict[str, object]], body: bytes) -> bytes:
    desc = {"page_size": PAGE, "devices": [{"name": "dev", "instance_id": 0, "version": 1}]}
    desc["devices"][0]["fields"] = fields  # type: ignore[index]
    return HEAD + RAM_START + RAM_END + start(4, 3, b"dev", 1) + body + footer(3) + tail(desc)


def test_device_fields_are_decoded_as_analyze_migration_lays_them_out() -> None:
    parser = MigrationParser(decode=True)
    parser.feed(STREAM)
    parser.finish()
    assert parser.state == {"dev (3)": {"a": 7, "b": [b"abc", b"def"], "dev/sub": {"c": 9}}}
    signed = [{"name": "s", "type": "int16", "size": 2}, {"name": "f", "type": "bool", "size": 1}]
    parser = MigrationParser(decode=True)
    parser.feed(_with_fields(signed, b"\xff\xfe\x02"))
    parser.finish()
    assert parser.state == {"dev (3)": {"s": -2, "f": True}}


def test_field_values_qemu_refuses_are_refused() -> None:
    irq = [{"name": "irq_state", "type": "pci irq state", "size": 16}]
    assert "pin 2 is 0x2" in str(
        rejection(_with_fields(irq, be32(1) + be32(0) + be32(2) + be32(0)))
    )
    parse(_with_fields(irq, be32(1) * 4))
    equal = [{"name": "n", "type": "int32 equal", "size": 4}]
    receiver = {("dev", 0): {"n": 4}}
    parse(_with_fields(equal, be32(5)))  # no receiver: what a matching machine would accept
    parse(_with_fields(equal, be32(4)), receiver=receiver)
    error = rejection(_with_fields(equal, be32(5)), receiver=receiver)
    assert "field 'n': 5 != 4" in str(error) and "receiving machine" in str(error)


def test_decoding_is_bounded_by_the_values_the_vmdesc_makes() -> None:
    huge = [{"name": "z", "type": "uint8", "size": 0, "array_len": FIELD_VALUES_LIMIT + 1}]
    assert "more than the stub's bound" in str(rejection(_with_fields(huge, b"")))
