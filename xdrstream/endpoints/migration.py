"""QEMU's migration stream format, as QEMU 7.2 writes and reads it: an incremental parser.

No I/O: `MigrationParser.feed()` takes the stream in chunks of any size as they arrive and
`finish()` judges it at end of input; both raise `MigrationError` (what, where: byte offset
and section). Facts from QEMU 7.2's migration/savevm.c (sections), migration/ram.c (the RAM
section) and scripts/analyze-migration.py (device sections read through the vmdesc):

    header    be32 0x5145564d "QEVM", be32 3
    config    u8 0x07, be32 n, n bytes machine name, [subsections]   (machines >= 2.9)
    START/FULL u8 0x01/0x04, be32 section id, u8 n, n bytes idstr, be32 instance, be32 version,
              body, [footer]
    PART/END  u8 0x02/0x03, be32 section id (of an earlier START/FULL), body, [footer]
    COMMAND   u8 0x08, be16 command, be16 length, length bytes
    footer    u8 0x7e, be32 section id                   (machines >= 2.4 send footers)
    EOF       u8 0x00, then the vmdesc: u8 0x06, be32 length, JSON describing device sections

The RAM section ("ram", instance 0, version 4) is a sequence of be64 words `address | flags`
(flags in the bits below the target page size): MEM_SIZE (total, then per block u8 n, name,
be64 length), ZERO (block name unless CONTINUE, one fill byte), PAGE (block name unless
CONTINUE, one target page), EOS (end of this part). The block named last carries over to the
next section, as in QEMU. A source with the dirty-bitmaps capability adds a "dirty-bitmap"
section (chunks up to EOS) and a MIG_CMD_POSTCOPY_ADVISE; commands are judged as a restoring
QEMU 7.2 without capabilities judges them (see MIG_COMMANDS). Pages stream through in
constant memory (page bodies are skipped, never copied; a fast path walks consecutive CONTINUE
pages inside a chunk).

Device sections carry no length on the wire: QEMU reads them with its compiled-in device
descriptions; the stub has only the vmdesc JSON QEMU appends after EOF, whose field sizes are
the bytes written (savevm.c vmsd_desc_field_end). So from the first device section on the
parser holds the input (at most `hold_limit` bytes, `DEVICE_STATE_LIMIT` by default), finds
the vmdesc at the end of input, then decodes the held sections field by field as
analyze-migration.py does (`decode_fields`: sizes, structs and their subsections, footers
included; `decode=True` keeps the values in `state`) and judges the values QEMU 7.2 judges
from the stream alone (`check_value`, `check_device_state`) or, given a `receiver` (the
device state of a save by the receiving machine, `receiver_state`), against its values.
The vmdesc must end the stream: a stream cut inside it, or with bytes after it, is rejected
(QEMU 7.2 itself stops judging at EOF: it only drains the vmdesc, so it accepts such
streams; the stub is stricter because it is a stream checker).

A stream with device sections but no vmdesc (machines that suppress it, none of x86's, or
the postcopy-ram capability) cannot be checked and is rejected, saying so.

Where the stub cannot know the receiving machine (which RAM blocks and devices it has, their
field values, without a `receiver`), it accepts what a matching machine would: any block
names and lengths the MEM_SIZE list declares, any device the vmdesc describes. Checks that
need guest RAM contents or a RAM block's maximum length (kvm-tpr-opt's state, fw_cfg's
acpi_mr sizes) are not made: pages stream through unkept.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

MAGIC = 0x5145564D  # "QEVM"
VERSION = 3
VERSION_COMPAT = 2  # QEMU: "SaveVM v2 format is obsolete and don't work anymore"

QEMU_VM_EOF = 0x00
QEMU_VM_SECTION_START = 0x01
QEMU_VM_SECTION_PART = 0x02
QEMU_VM_SECTION_END = 0x03
QEMU_VM_SECTION_FULL = 0x04
QEMU_VM_SUBSECTION = 0x05
QEMU_VM_VMDESCRIPTION = 0x06
QEMU_VM_CONFIGURATION = 0x07
QEMU_VM_COMMAND = 0x08
QEMU_VM_SECTION_FOOTER = 0x7E

SECTION_NAMES = {
    QEMU_VM_SECTION_START: "START",
    QEMU_VM_SECTION_PART: "PART",
    QEMU_VM_SECTION_END: "END",
    QEMU_VM_SECTION_FULL: "FULL",
}

RAM_SAVE_FLAG_ZERO = 0x02
RAM_SAVE_FLAG_MEM_SIZE = 0x04
RAM_SAVE_FLAG_PAGE = 0x08
RAM_SAVE_FLAG_EOS = 0x10
RAM_SAVE_FLAG_CONTINUE = 0x20
RAM_SAVE_FLAG_XBZRLE = 0x40
RAM_SAVE_FLAG_HOOK = 0x80
RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100
RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200  # QEMU >= 8.0; QEMU 7.2 rejects it as unknown
RAM_VERSION = 4

# migration/block-dirty-bitmap.c: the "dirty-bitmap" section (version 1), chunk flags
DIRTY_BITMAP_VERSION = 1
DIRTY_BITMAP_EOS = 0x01
DIRTY_BITMAP_ZEROES = 0x02
DIRTY_BITMAP_BITMAP_NAME = 0x04
DIRTY_BITMAP_DEVICE_NAME = 0x08
DIRTY_BITMAP_START = 0x10
DIRTY_BITMAP_COMPLETE = 0x20
DIRTY_BITMAP_BITS = 0x40
DIRTY_BITMAP_EXTRA_FLAGS = 0x80
DIRTY_BITMAP_CHUNK_LIMIT = 1 << 20
"""Largest serialized bitmap chunk accepted (QEMU sends chunks of ~1 KiB)."""

TARGET_PAGE_SIZE = 4096
"""x86's target page size (the stub stands in for qemu-system-x86_64)."""

DEVICE_STATE_LIMIT = 16 << 20
"""Bytes held from the first device section to the end of the vmdesc (a PC guest: ~0.2 MiB)."""

FIELD_VALUES_LIMIT = 1 << 20
"""Most field values decoded from one device section (with `decode`, from the whole stream):
the vmdesc's array_len multiplies a few JSON bytes into many values, so this bounds the memory
and time of decoding (~100 B a value). A q35 guest's largest section (ICH9 LPC) has ~17,000."""

MACHINE_NAME_LIMIT = 256
"""Longest machine name accepted in the CONFIGURATION section (QEMU's are ~15 bytes)."""

# QEMU 7.2 savevm.c enum qemu_vm_cmd and mig_cmd_args: command -> (name, argument length,
# -1 for variable). What a restoring QEMU 7.2 (no migration capabilities set, as for a restore
# from a file) does with each, seen with real QEMU (tests/transport/test_qemu_commands.py):
# OPEN_RETURN_PATH opens one (on the incoming fd) and PING then needs it; POSTCOPY_ADVISE of
# length 0 (a source with only the dirty-bitmaps capability) is accepted once, of length 16
# (postcopy-ram) refused; LISTEN, RUN, RAM_DISCARD and PACKAGED fail or never complete;
# ENABLE_COLO leaves the restore in state 'colo' for good; POSTCOPY_RESUME is ignored
# ("illegal resume received"); RECV_BITMAP with a consistent counted block name is accepted.
MIG_COMMANDS = {
    1: ("OPEN_RETURN_PATH", 0),
    2: ("PING", 4),
    3: ("POSTCOPY_ADVISE", -1),
    4: ("POSTCOPY_LISTEN", 0),
    5: ("POSTCOPY_RUN", 0),
    6: ("POSTCOPY_RAM_DISCARD", -1),
    7: ("PACKAGED", 4),
    8: ("ENABLE_COLO", 0),
    9: ("POSTCOPY_RESUME", 0),
    10: ("RECV_BITMAP", -1),
}

CONFIG_SUBSECTIONS = (b"configuration/target-page-bits", b"configuration/capabilities")

_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")

# generator requests: n > 0 read n bytes, n < 0 skip -n bytes, or one of these
_PAGES = 0  # walk consecutive CONTINUE pages in the current chunk (the fast path)
_HOLD = 1 << 62  # hold the rest of the input until the vmdesc is known
_DONE = -(1 << 62)  # the stream is complete: nothing may follow


class MigrationError(Exception):
    """The stream is not one QEMU would load; `offset` is the byte, `section` the section."""

    def __init__(self, reason: str, offset: int, section: str = "") -> None:
        self.detail = f"{reason} in {section}" if section else reason
        super().__init__(f"{self.detail} (at byte {offset})")
        self.reason = reason
        self.offset = offset
        self.section = section


@dataclass
class Summary:
    """What a complete stream held."""

    machine: str | None = None
    sections: int = 0
    blocks: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    zero_pages: int = 0
    devices: int = 0
    commands: int = 0
    held_bytes: int = 0
    vmdesc_bytes: int = 0


@dataclass
class _Section:
    section_id: int
    idstr: str
    instance: int
    version: int
    device: dict[str, Any] | None = None  # the vmdesc entry; None for RAM and dirty bitmaps

    def label(self, kind: int) -> str:
        return f"{SECTION_NAMES.get(kind, '?')} section {self.section_id} '{self.idstr}'"


class MigrationParser:
    """Incremental validator of a real QEMU migration stream (see the module docstring)."""

    def __init__(
        self,
        *,
        page_size: int = TARGET_PAGE_SIZE,
        hold_limit: int = DEVICE_STATE_LIMIT,
        multifd_flush: bool = False,
        trace: list[tuple[int, str]] | None = None,
        decode: bool = False,
        receiver: dict[tuple[str, int], dict[str, Any]] | None = None,
    ) -> None:
        self.page_size = page_size
        # with `decode`, device sections' field values by "idstr (section id)", laid out as
        # scripts/analyze-migration.py's `--dump state` (see decode_fields)
        self.state: dict[str, dict[str, Any]] | None = {} if decode else None
        # the receiving machine's device state (receiver_state() of a save it made): fields
        # QEMU checks against its own values ("... equal", "int32 le", "pci config") are
        # checked against these; without it only checks the stream alone allows are made
        self.receiver = receiver
        self.trace = trace  # (offset, what) of sections, footers, pages: for tests
        self.hold_limit = hold_limit
        self.multifd_flush = multifd_flush
        self.summary = Summary()
        self.offset = 0  # stream offset of the next byte not yet consumed
        self.complete = False
        self.where = "the file header"
        self._field = bytearray()
        self._held: bytearray | None = None
        self._hold_start = 0
        self._vmdesc: dict[str, Any] | None = None
        self._devices: dict[tuple[str, int], dict[str, Any]] = {}
        self._sections: dict[int, _Section] = {}
        self._block_len = 0  # length of the RAM block named last (0: none yet)
        self._block = ""
        self._return_path = False  # MIG_CMD_OPEN_RETURN_PATH seen
        self._advised = False  # MIG_CMD_POSTCOPY_ADVISE seen
        self._page_rest = 0  # body bytes of a fast-path page still to skip
        self._field_label = ""  # where decode_fields errors say they are
        self._values = 0  # field values decoded and kept (decode=True), FIELD_VALUES_LIMIT
        self._gen = self._stream()
        self._request = next(self._gen)

    # -- driving the generator -------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self._held is not None:
            self._hold(view)
            return
        pos, end = 0, len(view)
        base = self.offset
        while pos < end:
            request = self._request
            if request == _DONE:
                raise MigrationError(
                    f"{end - pos} bytes after the vmdesc, which ends the stream", base + pos
                )
            if request == _PAGES:
                if self._page_rest:  # the body of a fast-path page begun in an earlier chunk
                    take = min(self._page_rest, end - pos)
                    self._page_rest -= take
                    pos += take
                    if self._page_rest:
                        break
                pos = self._fast_pages(view, pos, end)
                self.offset = base + pos
                if self._page_rest:  # the chunk ended inside a page body: stay on the fast path
                    break
                self._advance(None)
            elif request == _HOLD:
                self.offset = base + pos
                self._held = bytearray()
                self._hold_start = self.offset
                self._hold(view[pos:])
                return
            elif request < 0:
                take = min(-request, end - pos)
                pos += take
                if take < -request:
                    self._request += take
                    break
                self.offset = base + pos
                self._advance(None)
            else:
                have = len(self._field)
                if not have and end - pos >= request:
                    value = bytes(view[pos : pos + request])
                    pos += request
                else:
                    take = min(request - have, end - pos)
                    self._field += view[pos : pos + take]
                    pos += take
                    if len(self._field) < request:
                        break
                    value = bytes(self._field)
                    self._field.clear()
                self.offset = base + pos
                self._advance(value)
        self.offset = base + pos

    def finish(self) -> Summary:
        """End of input: the summary of a complete stream, else MigrationError."""
        if self._held is not None:
            held, self._held = self._held, None
            self._vmdesc = self._find_vmdesc(held)
            self.offset = self._hold_start
            self.summary.held_bytes = len(held)
            self._advance(None)  # the generator waits at _HOLD; it may go on now
            self.feed(held)
        if self._request != _DONE:
            raise MigrationError(f"truncated: the stream ends in {self.where}", self.offset)
        return self.summary

    def _advance(self, value: bytes | None) -> None:
        try:
            self._request = self._gen.send(value)
        except StopIteration:
            self._request = _DONE
            self.complete = True

    def _hold(self, view: memoryview) -> None:
        assert self._held is not None
        if len(self._held) + len(view) > self.hold_limit:
            raise MigrationError(
                f"device state and vmdesc exceed the {self.hold_limit}-byte bound held until "
                f"the vmdesc arrives (device sections start at byte {self._hold_start})",
                self._hold_start + self.hold_limit,
            )
        self._held += view
        self.offset += len(view)

    def _fast_pages(self, view: memoryview, pos: int, end: int) -> int:
        """Skip CONTINUE PAGE / ZERO records of the current block from `pos` on.

        A page whose body runs past the chunk's end is counted and its remaining body left
        in `_page_rest`, so reads of any size cost no per-page generator steps.
        """
        if self.trace is not None:  # every page goes through the traced path
            return pos
        mask = self.page_size - 1
        record = 8 + self.page_size
        limit = self._block_len
        unpack = _BE64.unpack_from
        page_flags = RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE
        zero_flags = RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_CONTINUE
        pages = zeros = 0
        while end - pos >= 9:
            word = unpack(view, pos)[0]
            flags = word & mask
            if flags == page_flags:
                if word - flags >= limit:
                    break
                pos += record
                pages += 1
                if pos > end:  # the body goes on in the next chunk(s): skipped there
                    self._page_rest = pos - end
                    pos = end
                    break
            elif flags == zero_flags:
                if word - flags >= limit:
                    break
                pos += 9
                zeros += 1
            else:
                break
        self.summary.pages += pages
        self.summary.zero_pages += zeros
        return pos

    def _mark(self, at: int, what: str) -> None:
        if self.trace is not None:
            self.trace.append((at, what))

    def _error(self, reason: str, at: int) -> MigrationError:
        return MigrationError(reason, at, self.where)

    # -- the format ------------------------------------------------------------------------
    def _stream(self) -> Generator[int, bytes | None, None]:
        head = yield 8
        assert head is not None
        magic, version = struct.unpack(">II", head)
        if magic != MAGIC:
            raise MigrationError(
                f"not a migration stream: magic 0x{magic:08x} {head[:4]!r}, expected "
                f"0x{MAGIC:08x} 'QEVM'",
                0,
            )
        if version == VERSION_COMPAT:
            raise MigrationError("stream version 2 is obsolete (QEMU loads version 3)", 4)
        if version != VERSION:
            raise MigrationError(f"unsupported stream version {version}, expected 3", 4)
        self.where = "the first section"
        kind = (yield from self._read(1))[0]
        # Machines that send the CONFIGURATION section (>= 2.9) all send footers (>= 2.4);
        # older ones tell by their first footer position: 0x7e there is never a section type.
        footers: bool | None = None
        if kind == QEMU_VM_CONFIGURATION:
            kind = yield from self._configuration()
            footers = True
        while kind != QEMU_VM_EOF:
            at = self.offset - 1
            self.summary.sections += 1
            self._mark(at, f"section 0x{kind:02x}")
            if kind in (QEMU_VM_SECTION_START, QEMU_VM_SECTION_FULL):
                section = yield from self._start_full(kind, at)
            elif kind in (QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END):
                section = yield from self._part_end(kind, at)
            elif kind == QEMU_VM_COMMAND:
                yield from self._command(at)
                self.where = "the section after a QEMU_VM_COMMAND"
                kind = (yield from self._read(1))[0]
                continue
            else:
                raise self._error(f"unknown section type 0x{kind:02x}", at)
            label = section.label(kind)
            self.where = f"the footer of {label}"
            mark = (yield from self._read(1))[0]
            self._mark(self.offset - 1, f"footer {label}")
            if footers is None:
                footers = mark == QEMU_VM_SECTION_FOOTER
            if footers:
                if mark != QEMU_VM_SECTION_FOOTER:
                    raise self._error(
                        f"missing section footer: 0x{mark:02x}, expected 0x7e", self.offset - 1
                    )
                (footer_id,) = _BE32.unpack((yield from self._read(4)))
                if footer_id != section.section_id:
                    raise self._error(
                        f"section footer id {footer_id}, expected {section.section_id}",
                        self.offset - 4,
                    )
                self.where = f"the section after {label}"
                kind = (yield from self._read(1))[0]
            else:
                kind = mark
        self._mark(self.offset - 1, "eof")
        self.where = "the vmdesc after QEMU_VM_EOF"
        yield from self._vmdesc_section()

    def _read(self, size: int) -> Generator[int, bytes | None, bytes]:
        if not size:  # a request of 0 is _PAGES's: an empty counted string reads nothing
            return b""
        value = yield size
        assert value is not None
        return value

    def _configuration(self) -> Generator[int, bytes | None, int]:
        """The CONFIGURATION section; returns the type of the section after it."""
        self.where = "the CONFIGURATION section"
        (length,) = _BE32.unpack((yield from self._read(4)))
        if not 0 < length <= MACHINE_NAME_LIMIT:
            raise self._error(
                f"machine name length {length} not in 1..{MACHINE_NAME_LIMIT}", self.offset - 4
            )
        name = yield from self._read(length)
        self.summary.machine = name.decode("utf-8", "replace")
        while True:  # subsections follow the fields; the next section type ends them
            mark = yield 1
            assert mark is not None
            if mark[0] != QEMU_VM_SUBSECTION:
                break
            at = self.offset - 1
            sub = yield from self._read((yield from self._read(1))[0])
            yield from self._read(4)  # version
            if sub == CONFIG_SUBSECTIONS[0]:
                (bits,) = _BE32.unpack((yield from self._read(4)))
                if not 10 <= bits <= 16:
                    raise self._error(f"target page bits {bits} not in 10..16", at)
                self.page_size = 1 << bits
            elif sub == CONFIG_SUBSECTIONS[1]:
                (count,) = _BE32.unpack((yield from self._read(4)))
                names = []
                for _ in range(count):
                    names.append((yield from self._read((yield from self._read(1))[0])))
                raise self._error(
                    f"migration capabilities {b', '.join(names).decode(errors='replace')} are "
                    "not supported by the stub",
                    at,
                )
            else:
                raise self._error(f"unknown configuration subsection {sub!r}", at)
        return mark[0]

    def _start_full(self, kind: int, at: int) -> Generator[int, bytes | None, _Section]:
        self.where = f"the header of the {SECTION_NAMES[kind]} section at byte {at}"
        (section_id,) = _BE32.unpack((yield from self._read(4)))
        length = (yield from self._read(1))[0]
        if not length:
            raise self._error("empty section idstr", self.offset - 1)
        idstr = (yield from self._read(length)).decode("utf-8", "replace")
        instance, version = struct.unpack(">II", (yield from self._read(8)))
        section = _Section(section_id, idstr, instance, version)
        self.where = section.label(kind)
        if idstr == "ram" and instance == 0:
            if version != RAM_VERSION:
                raise self._error(f"RAM section version {version}, expected 4", self.offset - 4)
            self._sections[section_id] = section
            yield from self._ram(section)
            return section
        if idstr == "dirty-bitmap" and instance == 0:
            if version != DIRTY_BITMAP_VERSION:
                raise self._error(
                    f"dirty-bitmap section version {version}, expected 1", self.offset - 4
                )
            self._sections[section_id] = section
            yield from self._dirty_bitmaps()
            return section
        if self._vmdesc is None:
            yield _HOLD
            self.where = section.label(kind)
        device = self._devices.get((idstr, instance))
        if device is None:
            raise self._error(
                f"section '{idstr}' instance {instance} is neither RAM nor a device the "
                "vmdesc describes",
                at,
            )
        if version != device.get("version"):
            raise self._error(
                f"section version {version}, the vmdesc describes version {device.get('version')}",
                self.offset - 4,
            )
        section.device = device
        self._sections[section_id] = section
        self.summary.devices += 1
        yield from self._device_section(section, kind)
        return section

    def _part_end(self, kind: int, at: int) -> Generator[int, bytes | None, _Section]:
        self.where = f"the header of the {SECTION_NAMES[kind]} section at byte {at}"
        (section_id,) = _BE32.unpack((yield from self._read(4)))
        section = self._sections.get(section_id)
        if section is None:
            raise self._error(
                f"{SECTION_NAMES[kind]} of section id {section_id}, which no START or FULL "
                "section opened",
                at + 1,
            )
        self.where = section.label(kind)
        if section.idstr == "dirty-bitmap" and section.device is None:
            yield from self._dirty_bitmaps()
        elif section.device is None:
            yield from self._ram(section)
        else:
            yield from self._device_section(section, kind)
        return section

    def _command(self, at: int) -> Generator[int, bytes | None, None]:
        """A QEMU_VM_COMMAND, judged as a restoring QEMU 7.2 does (see MIG_COMMANDS)."""
        self.where = f"the QEMU_VM_COMMAND at byte {at}"
        command, length = struct.unpack(">HH", (yield from self._read(4)))
        known = MIG_COMMANDS.get(command)
        if known is None:
            raise self._error(f"unknown migration command 0x{command:x} (length {length})", at)
        name, expected = known
        if expected != -1 and length != expected:
            raise self._error(f"MIG_CMD_{name} with length {length}, expected {expected}", at)
        self.where = f"MIG_CMD_{name} at byte {at}"
        if name == "OPEN_RETURN_PATH":
            self._return_path = True
        elif name == "PING":
            yield from self._read(4)
            if not self._return_path:
                raise self._error("MIG_CMD_PING received with no return path open", at)
        elif name == "POSTCOPY_ADVISE":
            if self._advised:
                raise self._error("MIG_CMD_POSTCOPY_ADVISE a second time (postcopy state)", at)
            if length == 16:
                raise self._error(
                    "MIG_CMD_POSTCOPY_ADVISE of 16 bytes: the postcopy-ram capability is off", at
                )
            if length:
                raise self._error(f"MIG_CMD_POSTCOPY_ADVISE of invalid length {length}", at)
            self._advised = True  # a source with the dirty-bitmaps capability only
        elif name == "RECV_BITMAP":
            size = (yield from self._read(1))[0] if length else 0
            if not size or length != size + 1:
                raise self._error(
                    f"MIG_CMD_RECV_BITMAP of length {length} holding a block name of {size} "
                    "bytes: expected a counted, non-empty name filling it",
                    at,
                )
            yield from self._read(size)  # QEMU 7.2 accepts any name here (outside recovery)
        elif name != "POSTCOPY_RESUME":  # RESUME outside a postcopy recovery: ignored
            raise self._error(
                f"MIG_CMD_{name}: postcopy and COLO do not complete a restore (QEMU 7.2 "
                "fails or waits for ever)",
                at,
            )
        self.summary.commands += 1

    def _ram(self, section: _Section) -> Generator[int, bytes | None, None]:
        page_size = self.page_size
        mask = page_size - 1
        label = self.where
        while True:
            self.where = label
            word = _BE64.unpack((yield from self._read(8)))[0]
            at = self.offset - 8
            flags = word & mask
            addr = word - flags
            self._mark(at, f"ram 0x{flags:x} {self._block}")
            if flags & RAM_SAVE_FLAG_COMPRESS_PAGE:
                raise self._error(
                    "compressed RAM page (COMPRESS_PAGE 0x100): the compress capability is off",
                    at,
                )
            base = flags & ~RAM_SAVE_FLAG_CONTINUE
            if flags & (RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_XBZRLE):
                if flags & RAM_SAVE_FLAG_CONTINUE:
                    if not self._block_len and not self._block:
                        raise self._error("CONTINUE page before any RAM block was named", at)
                else:
                    name = (yield from self._read((yield from self._read(1))[0])).decode(
                        "utf-8", "replace"
                    )
                    if name not in self.summary.blocks:
                        raise self._error(f"page of unknown RAM block {name!r}", at)
                    self._block, self._block_len = name, self.summary.blocks[name]
                if addr >= self._block_len:
                    raise self._error(
                        f"page at 0x{addr:x} outside RAM block '{self._block}' "
                        f"(length 0x{self._block_len:x})",
                        at,
                    )
            if base == RAM_SAVE_FLAG_PAGE:
                yield -page_size
                self.summary.pages += 1
                yield _PAGES
            elif base == RAM_SAVE_FLAG_ZERO:
                yield 1
                self.summary.zero_pages += 1
                yield _PAGES
            elif base == RAM_SAVE_FLAG_MEM_SIZE:
                yield from self._block_list(addr, at)
            elif base == RAM_SAVE_FLAG_EOS:
                return
            elif base == RAM_SAVE_FLAG_MULTIFD_FLUSH and self.multifd_flush:
                continue
            else:
                raise self._error(self._flags_reason(flags), at)

    def _dirty_bitmaps(self) -> Generator[int, bytes | None, None]:
        """A dirty-bitmap section's chunks up to the one flagged EOS (block-dirty-bitmap.c).

        A source with the dirty-bitmaps capability sends this section (just EOS when it has
        no bitmaps). QEMU 7.2 cancels, not fails, the bitmap migration when a node or bitmap
        it names is unknown, so names are only read; the structure is checked.
        """
        label = self.where
        while True:
            at = self.offset
            flags = (yield from self._read(1))[0]
            if flags & DIRTY_BITMAP_EXTRA_FLAGS:
                flags = flags << 8 | (yield from self._read(1))[0]
                if flags & DIRTY_BITMAP_EXTRA_FLAGS:
                    flags = flags << 16 | _BE16.unpack((yield from self._read(2)))[0]
            self.where = f"the dirty-bitmap chunk at byte {at} (flags 0x{flags:x}) of {label}"
            for name_flag in (DIRTY_BITMAP_DEVICE_NAME, DIRTY_BITMAP_BITMAP_NAME):
                if flags & name_flag:
                    yield from self._read((yield from self._read(1))[0])
            if flags & DIRTY_BITMAP_START:
                yield from self._read(5)  # be32 granularity, u8 bitmap flags
            elif flags & DIRTY_BITMAP_COMPLETE:
                pass
            elif flags & DIRTY_BITMAP_BITS:
                yield from self._read(12)  # be64 first sector, be32 sector count
                if not flags & DIRTY_BITMAP_ZEROES:
                    (size,) = _BE64.unpack((yield from self._read(8)))
                    if size > DIRTY_BITMAP_CHUNK_LIMIT:
                        raise self._error(
                            f"dirty-bitmap chunk of {size} bytes exceeds "
                            f"{DIRTY_BITMAP_CHUNK_LIMIT}",
                            self.offset - 8,
                        )
                    if size:
                        yield -size
            if flags & DIRTY_BITMAP_EOS:
                self.where = label
                return

    def _flags_reason(self, flags: int) -> str:
        if flags & RAM_SAVE_FLAG_XBZRLE:
            return f"XBZRLE RAM page (flags 0x{flags:x}): the xbzrle capability is off"
        if flags & RAM_SAVE_FLAG_HOOK:
            return f"RAM_SAVE_FLAG_HOOK (flags 0x{flags:x}): RDMA hooks are not supported"
        if flags & RAM_SAVE_FLAG_MULTIFD_FLUSH:
            return f"MULTIFD_FLUSH (flags 0x{flags:x}) is QEMU 8.0's, unknown to QEMU 7.2"
        return f"unknown combination of RAM flags 0x{flags:x}"

    def _block_list(self, total: int, at: int) -> Generator[int, bytes | None, None]:
        blocks: dict[str, int] = {}
        remaining = total
        while remaining:
            length = (yield from self._read(1))[0]
            if not length:
                raise self._error("MEM_SIZE block with an empty name", self.offset - 1)
            name = (yield from self._read(length)).decode("utf-8", "replace")
            size = _BE64.unpack((yield from self._read(8)))[0]
            if size > remaining:
                raise self._error(
                    f"RAM block '{name}' of 0x{size:x} bytes exceeds what MEM_SIZE 0x{total:x} "
                    f"leaves (0x{remaining:x})",
                    self.offset - 8,
                )
            blocks[name] = size
            remaining -= size
        self.summary.blocks.update(blocks)
        if self._block in blocks:
            self._block_len = blocks[self._block]

    def _device_section(self, section: _Section, kind: int) -> Generator[int, bytes | None, None]:
        """A device section's fields, decoded and judged (see check_device_state)."""
        assert section.device is not None
        at = self.offset
        count = _values_in(section.device)
        self._values = self._values + count if self.state is not None else count
        if self._values > FIELD_VALUES_LIMIT:
            raise self._error(
                f"the vmdesc makes {self._values} field values to decode, more than the "
                f"stub's bound of {FIELD_VALUES_LIMIT}",
                at,
            )
        key = f"{section.idstr} ({section.section_id})"
        values: dict[str, Any] = {} if self.state is None else self.state.setdefault(key, {})
        ref = None
        if self.receiver is not None:
            ref = self.receiver.get((section.idstr, section.instance))
        yield from self._device(section.device, section.label(kind), values, ref)
        check_device_state(section.idstr, values, at, section.label(kind))

    def _device(
        self,
        desc: dict[str, Any],
        label: str,
        out: dict[str, Any],
        ref: dict[str, Any] | None,
        path: str = "",
    ) -> Generator[int, bytes | None, None]:
        size = _fields_size(desc, self.offset, label)
        self._field_label = f"{label}{path}"
        if size:
            at = self.offset
            raw = yield from self._read(size)
            decode_fields(desc, raw, 0, size, at, self._field_label, out, self.trace, ref)
        for sub in desc.get("subsections") or ():
            if not isinstance(sub, dict):
                raise self._error("vmdesc: a subsection that is not an object", self.offset)
            name = str(sub.get("vmsd_name", ""))
            self.where = f"subsection '{name}' of {label}"
            at = self.offset
            if (yield from self._read(1))[0] != QEMU_VM_SUBSECTION:
                raise self._error(f"subsection '{name}' missing (no 0x05 marker)", at)
            got = (yield from self._read((yield from self._read(1))[0])).decode("utf-8", "replace")
            if got != name:
                raise self._error(f"subsection {got!r}, the vmdesc says {name!r}", at + 1)
            (version,) = _BE32.unpack((yield from self._read(4)))
            if version != sub.get("version"):
                raise self._error(
                    f"subsection version {version}, the vmdesc says {sub.get('version')}",
                    self.offset - 4,
                )
            child: dict[str, Any] = {}
            sub_ref = ref.get(name) if ref is not None else None
            yield from self._device(
                sub, label, child, sub_ref if isinstance(sub_ref, dict) else None, f"{path}/{name}"
            )
            out[name] = child
        self.where = label

    def _vmdesc_section(self) -> Generator[int, bytes | None, None]:
        at = self.offset
        kind = (yield from self._read(1))[0]
        if kind != QEMU_VM_VMDESCRIPTION:
            raise self._error(
                f"expected QEMU_VM_VMDESCRIPTION 0x06 after QEMU_VM_EOF, got 0x{kind:02x}", at
            )
        (length,) = _BE32.unpack((yield from self._read(4)))
        if length > self.hold_limit:
            raise self._error(f"vmdesc of {length} bytes exceeds {self.hold_limit}", at + 1)
        text = (yield from self._read(length)) if length else b""
        if self._vmdesc is None:
            self._vmdesc = self._parse_vmdesc(text, at + 5)
        self.summary.vmdesc_bytes = length

    def _find_vmdesc(self, held: bytearray) -> dict[str, Any]:
        """The vmdesc ending the held bytes: EOF 0x00, 0x06, be32 length, JSON to the end."""
        start = self._hold_start
        end = len(held)
        pos = end
        trailing: tuple[int, int] | None = None
        while (pos := held.rfind(b"\x00\x06", 0, pos)) >= 0:
            if pos + 6 > end:
                continue
            (length,) = _BE32.unpack_from(held, pos + 2)
            stop = pos + 6 + length
            if stop > end or held[pos + 6 : pos + 7] != b"{":
                continue
            try:
                value = json.loads(held[pos + 6 : stop])
            except ValueError:
                continue
            if stop < end:
                trailing = (stop, end - stop)
                break
            return self._parse_vmdesc_value(value, start + pos + 6)
        if trailing is not None:
            raise MigrationError(
                f"{trailing[1]} bytes after the vmdesc, which ends the stream",
                start + trailing[0],
                "the vmdesc after QEMU_VM_EOF",
            )
        raise MigrationError(
            f"no complete vmdesc (QEMU_VM_VMDESCRIPTION JSON) ends the stream: truncated? "
            f"The device sections from byte {start} on cannot be checked without it",
            start + end,
            self.where,
        )

    def _parse_vmdesc(self, text: bytes, at: int) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise self._error(f"vmdesc is not JSON: {exc}", at) from None
        return self._parse_vmdesc_value(value, at)

    def _parse_vmdesc_value(self, value: Any, at: int) -> dict[str, Any]:
        where = "the vmdesc after QEMU_VM_EOF"
        if not isinstance(value, dict) or not isinstance(value.get("devices"), list):
            raise MigrationError("vmdesc JSON without a 'devices' list", at, where)
        if value.get("page_size") != self.page_size:
            raise MigrationError(
                f"vmdesc page_size {value.get('page_size')}, expected {self.page_size}", at, where
            )
        for device in value["devices"]:
            if not isinstance(device, dict) or not isinstance(device.get("name"), str):
                raise MigrationError("vmdesc device without a name", at, where)
            instance = device.get("instance_id")
            if not isinstance(instance, int):
                raise MigrationError(f"vmdesc device {device['name']!r}: no instance_id", at, where)
            self._devices[(device["name"], instance)] = device
        return value


def _values_in(desc: dict[str, Any]) -> int:
    """How many values decode_fields makes of a vmdesc entry (structs count as one too)."""
    total = 0
    for entry in desc.get("fields") or ():
        if not isinstance(entry, dict):
            continue
        count = entry.get("array_len", 1)
        count = count if isinstance(count, int) and count > 0 else 1
        inner = entry.get("struct")
        total += count * (1 + _values_in(inner) if isinstance(inner, dict) else 1)
    for sub in desc.get("subsections") or ():
        if isinstance(sub, dict):
            total += 1 + _values_in(sub)
    return total


def _fields_size(desc: dict[str, Any], at: int, label: str) -> int:
    """Wire bytes of a vmdesc entry's fields (struct sizes include their subsections)."""
    total = 0
    for entry in desc.get("fields") or ():
        size = entry.get("size") if isinstance(entry, dict) else None
        count = entry.get("array_len", 1) if isinstance(entry, dict) else None
        if not isinstance(size, int) or not isinstance(count, int) or size < 0 or count < 0:
            name = entry.get("name") if isinstance(entry, dict) else entry
            raise MigrationError(f"vmdesc field {name!r} has no valid size", at, label)
        total += size * count
    return total


# vmdesc field types (QEMU 7.2 migration/vmstate-types.c VMStateInfo names) read as integers,
# by signedness; "bool" reads as one byte, any other type (buffers, timers, "pci config",
# "unused_buffer", "tmp", ...) as its bytes, as scripts/analyze-migration.py reads them.
INT_TYPES = {
    **dict.fromkeys(("int8", "int16", "int32", "int64", "int32 equal", "int32 le"), True),
    **dict.fromkeys(("int64 equal",), True),
    **dict.fromkeys(("uint8", "uint16", "uint32", "uint64"), False),
    **dict.fromkeys(("uint8 equal", "uint16 equal", "uint32 equal", "uint64 equal"), False),
}


def decode_fields(
    desc: dict[str, Any],
    raw: bytes,
    pos: int,
    limit: int,
    base: int,
    label: str,
    out: dict[str, Any] | None,
    trace: list[tuple[int, str]] | None = None,
    ref: dict[str, Any] | None = None,
) -> int:
    """Walk a vmdesc entry's fields over `raw[pos:limit]` (stream offset `base` + index).

    Returns the index after them. Struct fields are walked into (their fields, then their
    subsections, which must fill exactly the struct's vmdesc size); with `out`, values are
    stored by field name as scripts/analyze-migration.py lays them out: an `array_len` field
    or fields with an `index` as a list, a struct or subsection as a dict, integers as int,
    "bool" as bool, other types as bytes. Raises MigrationError naming the field. With
    `trace`, each leaf field's (offset, "field SIZE TYPE: LABEL/NAME") is appended. Values
    are judged by check_value, against `ref` (the receiving machine's values, laid out
    alike) where QEMU compares with its own.
    """
    for entry in desc.get("fields") or ():
        if not isinstance(entry, dict):
            raise MigrationError(f"vmdesc field {entry!r} is not an object", base + pos, label)
        name = str(entry.get("name"))
        kind = entry.get("type")
        size = entry.get("size")
        count = entry.get("array_len", 1)
        if not isinstance(size, int) or not isinstance(count, int) or size < 0 or count < 0:
            raise MigrationError(f"vmdesc field {name!r} has no valid size", base + pos, label)
        if pos + size * count > limit:
            raise MigrationError(
                f"field {name!r} ({count} x {size} bytes) runs past its struct's "
                f"{limit - pos} remaining bytes",
                base + pos,
                label,
            )
        values: list[Any] = []
        refs = ref.get(name) if ref is not None else None
        if "index" in entry and isinstance(refs, list):
            refs = refs[entry["index"] :]
        for item in range(count):
            ref_value = refs[item] if isinstance(refs, list) and item < len(refs) else refs
            if kind == "struct":
                inner = entry.get("struct")
                if not isinstance(inner, dict):
                    raise MigrationError(
                        f"vmdesc struct field {name!r} has no struct", base + pos, label
                    )
                child: dict[str, Any] | None = None if out is None else {}
                end = _decode_struct(
                    inner,
                    raw,
                    pos,
                    pos + size,
                    base,
                    f"{label}/{name}",
                    child,
                    trace,
                    ref_value if isinstance(ref_value, dict) else None,
                )
                if end != pos + size:
                    raise MigrationError(
                        f"struct field {name!r}: its fields and subsections take {end - pos} "
                        f"bytes, the vmdesc says {size}",
                        base + pos,
                        label,
                    )
                values.append(child)
            else:
                if trace is not None:
                    trace.append((base + pos, f"field {size} {kind}: {label}/{name}"))
                chunk = raw[pos : pos + size]
                signed = INT_TYPES.get(str(kind))
                value: Any
                if signed is not None:
                    value = int.from_bytes(chunk, "big", signed=signed)
                elif kind == "bool" and size == 1:
                    value = chunk[0] != 0
                else:
                    value = bytes(chunk)
                reason = check_value(str(kind), value, ref_value)
                if reason:
                    raise MigrationError(f"field {name!r}: {reason}", base + pos, label)
                values.append(value)
            pos += size
        if out is None:
            continue
        if "array_len" in entry:
            out[name] = values
        elif "index" in entry:
            items = out.setdefault(name, [])
            if not isinstance(items, list) or len(items) != entry["index"]:
                raise MigrationError(
                    f"vmdesc field {name!r} index {entry['index']} out of order", base + pos, label
                )
            items.append(values[0])
        else:
            out[name] = values[0]
    return pos


def _decode_struct(
    desc: dict[str, Any],
    raw: bytes,
    pos: int,
    limit: int,
    base: int,
    label: str,
    out: dict[str, Any] | None,
    trace: list[tuple[int, str]] | None,
    ref: dict[str, Any] | None,
) -> int:
    pos = decode_fields(desc, raw, pos, limit, base, label, out, trace, ref)
    for sub in desc.get("subsections") or ():
        at = base + pos
        if not isinstance(sub, dict):
            raise MigrationError("vmdesc: a subsection that is not an object", at, label)
        name = str(sub.get("vmsd_name", ""))
        if pos + 2 > limit or raw[pos] != QEMU_VM_SUBSECTION:
            raise MigrationError(f"subsection '{name}' missing (no 0x05 marker)", at, label)
        length = raw[pos + 1]
        got = raw[pos + 2 : pos + 2 + length].decode("utf-8", "replace")
        pos += 2 + length
        if got != name or pos + 4 > limit:
            raise MigrationError(f"subsection {got!r}, the vmdesc says {name!r}", at + 1, label)
        (version,) = _BE32.unpack_from(raw, pos)
        if version != sub.get("version"):
            raise MigrationError(
                f"subsection '{name}' version {version}, the vmdesc says {sub.get('version')}",
                base + pos,
                label,
            )
        pos += 4
        child: dict[str, Any] | None = None if out is None else {}
        sub_ref = ref.get(name) if ref is not None else None
        pos = _decode_struct(
            sub,
            raw,
            pos,
            limit,
            base,
            f"{label}/{name}",
            child,
            trace,
            sub_ref if isinstance(sub_ref, dict) else None,
        )
        if out is not None:
            out[name] = child
    return pos


# hw/pci/pci.c pci_init_cmask: the config bytes (offset, mask) get_pci_config_device compares
# with the receiving device's ("Bad config data"): ids, revision, class, header type, the
# capability list bit and pointer. (Capabilities' own bytes are checked too, less the bits the
# device makes writable, which the stream does not say: not checked here.)
PCI_CHECKED_CONFIG = (
    (0x00, 0xFF), (0x01, 0xFF), (0x02, 0xFF), (0x03, 0xFF), (0x06, 0x10), (0x08, 0xFF),
    (0x09, 0xFF), (0x0A, 0xFF), (0x0B, 0xFF), (0x0E, 0xFF), (0x34, 0xFF),
)  # fmt: skip

# qapi/run-state.json RunState (QEMU 7.2): what the globalstate section may name
RUN_STATES = frozenset(
    ("debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate", "prelaunch",
     "finish-migrate", "restore-vm", "running", "save-vm", "shutdown", "suspended", "watchdog",
     "guest-panicked", "colo")
)  # fmt: skip


def check_value(kind: str, value: Any, ref: Any) -> str:
    """Why QEMU 7.2 refuses a field value of vmdesc type `kind` ('' if it loads it).

    `ref` is the receiving machine's value of the same field, or None when unknown: the
    types QEMU compares with its own value are then accepted, as a matching machine would.
    """
    if kind == "pci irq state" and isinstance(value, bytes):  # hw/pci/pci.c get_pci_irq_state
        for pin in range(len(value) // 4):
            (level,) = _BE32.unpack_from(value, 4 * pin)
            if level > 1:
                return f"PCI irq state of pin {pin} is {level:#x}; QEMU loads only 0 or 1"
        return ""
    if ref is None or type(ref) is not type(value):
        return ""
    if kind.endswith(" equal") and value != ref:  # vmstate-types.c get_*_equal
        return f"{value} != {ref}: a '{kind}' field must equal the receiving machine's"
    if kind == "int32 le" and not 0 <= value <= ref:  # VMSTATE_INT32_POSITIVE_LE
        return f"{value} not in 0..{ref} (an 'int32 le' field, bounded by the receiving machine)"
    if kind == "pci config" and isinstance(value, bytes) and len(value) == len(ref):
        for at, mask in PCI_CHECKED_CONFIG:
            if at < len(value) and (value[at] ^ ref[at]) & mask:
                return (
                    f"PCI config byte 0x{at:02x} is 0x{value[at]:02x}, the receiving device has "
                    f"0x{ref[at]:02x} (read-only, compared by QEMU: 'Bad config data')"
                )
    return ""


def check_device_state(idstr: str, values: dict[str, Any], at: int, label: str) -> None:
    """Device checks QEMU 7.2 makes on a section's own values (no receiver needed).

    Only these devices' rules are known to the stub; other post_load checks are not made
    (tests/transport/test_qemu_fields.py names the one a real save's mutations found).
    """
    _check_ide_drives(values, at, label)
    ahci = values.get("ahci")
    if isinstance(ahci, dict) and isinstance(ahci.get("dev"), list):
        for port, device in enumerate(ahci["dev"]):
            if isinstance(device, dict):
                _check_ahci_port(port, device, at, label)
    if idstr == "globalstate":  # migration/global_state.c global_state_post_load
        runstate = values.get("runstate")
        if isinstance(runstate, bytes):
            name = runstate.split(b"\0", 1)[0].decode("utf-8", "replace")
            if name not in RUN_STATES:
                raise MigrationError(f"globalstate runstate {name!r} is no RunState", at, label)
    elif idstr == "cpu" and values.get("env.fpregs_format_vmstate", 0) != 0:
        raise MigrationError(
            "cpu env.fpregs_format_vmstate "
            f"{values['env.fpregs_format_vmstate']}: QEMU refuses old non-softfloat state",
            at,
            label,
        )


def receiver_state(data: bytes) -> dict[tuple[str, int], dict[str, Any]]:
    """The device state of a whole save, by (idstr, instance): a `receiver` for the parser.

    A receiving QEMU started as the source was has the values such a save holds in the fields
    it compares (e.g. PCIBUS nirq, vmmouse queue_size, fdc num_floppies, PCI ids)."""
    parser = MigrationParser(decode=True)
    parser.feed(data)
    parser.finish()
    assert parser.state is not None
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for section in parser._sections.values():
        if section.device is not None:
            by_key[(section.idstr, section.instance)] = parser.state[
                f"{section.idstr} ({section.section_id})"
            ]
    return by_key


def _check_ide_drives(values: Any, at: int, label: str) -> None:
    """hw/ide/core.c vmstate_ide_drive: identify_data is on the wire iff identify_set != 0
    (VMSTATE_BUFFER_TEST), so a changed identify_set moves every later byte for QEMU."""
    if isinstance(values, list):
        for item in values:
            _check_ide_drives(item, at, label)
    elif isinstance(values, dict):
        flag = values.get("identify_set")
        present = "identify_data" in values
        if isinstance(flag, int) and not isinstance(flag, bool) and bool(flag) != present:
            raise MigrationError(
                f"IDE drive identify_set {flag} but identify_data "
                f"{'present' if present else 'absent'}: QEMU would read the fields after it "
                "at the wrong place",
                at,
                label,
            )
        for item in values.values():
            if isinstance(item, (dict, list)):
                _check_ide_drives(item, at, label)


# hw/ide/ahci_internal.h port command bits
AHCI_PORT_CMD_START = 1 << 0
AHCI_PORT_CMD_FIS_RX = 1 << 4
AHCI_PORT_CMD_FIS_ON = 1 << 14
AHCI_PORT_CMD_LIST_ON = 1 << 15
AHCI_MAX_CMDS = 32


def _check_ahci_port(port: int, device: dict[str, Any], at: int, label: str) -> None:
    """hw/ide/ahci.c ahci_state_post_load, the checks on the state alone (the others map
    guest memory: the command list and FIS buffers, an NCQ command's scatter list)."""
    cmd = device.get("port_regs.cmd")
    if isinstance(cmd, int):
        if not cmd & AHCI_PORT_CMD_START and cmd & AHCI_PORT_CMD_LIST_ON:
            raise MigrationError(
                f"AHCI port {port}: DMA engine off but LIST_ON set (cmd {cmd:#x})", at, label
            )
        if not cmd & AHCI_PORT_CMD_FIS_RX and cmd & AHCI_PORT_CMD_FIS_ON:
            raise MigrationError(
                f"AHCI port {port}: FIS receive off but FIS_ON set (cmd {cmd:#x})", at, label
            )
    for slot, ncq in enumerate(device.get("ncq_tfs") or ()):
        if not isinstance(ncq, dict):
            continue
        if ncq.get("used") != ncq.get("halt"):
            raise MigrationError(
                f"AHCI port {port} NCQ slot {slot}: used {ncq.get('used')} but halt "
                f"{ncq.get('halt')} (QEMU loads only both or neither)",
                at,
                label,
            )
        if ncq.get("halt") and isinstance(cmd, int) and not cmd & AHCI_PORT_CMD_START:
            raise MigrationError(
                f"AHCI port {port} NCQ slot {slot}: halted with the DMA engine off (no command "
                "list to resume from)",
                at,
                label,
            )
    busy = device.get("busy_slot")
    if isinstance(busy, int) and busy != -1 and not 0 <= busy < AHCI_MAX_CMDS:
        raise MigrationError(
            f"AHCI port {port}: busy_slot {busy} not -1 nor in 0..{AHCI_MAX_CMDS - 1}", at, label
        )
