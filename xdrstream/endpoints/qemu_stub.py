"""A QEMU stand-in: a separate process at the end of a migration stream pipe.

    python -m xdrstream.endpoints.qemu_stub incoming [--fd N] [--check full|header] ...
    python -m xdrstream.endpoints.qemu_stub outgoing (--size BYTES [--seed S] | --from FILE) ...

`incoming` reads a migration stream (as QEMU does with `-incoming fd:N`), judges it, counts
bytes, computes SHA-256 and reports one JSON line: {"role", "ok", "bytes", "sha256",
"error"}. `outgoing` writes a synthetic stream of exactly `--size` bytes, or replays a
recorded one (`--from FILE`, e.g. a real QEMU save), as QEMU does for `migrate fd:NAME`, and
reports the same way. The report goes to `--report-fd`, or to the file `--report`, else to
stdout (to stderr when stdout carries the stream).

`--check full` (the default) judges a stream as QEMU 7.2 would. The machine name in the
CONFIGURATION section tells the two formats apart: `xdrstream-synthetic` is ours (below);
any other machine (or a stream without a CONFIGURATION section, as old machine types write)
is QEMU's real format, checked by `migration.MigrationParser`: sections, footers, the RAM
section's pages inside their blocks, device sections against the vmdesc, EOF and the vmdesc
ending the stream (see that module; `iter_real_format` writes a RAM-heavy stream of it).
`--receiver FILE` (a save made by the receiving machine) adds the device-field checks QEMU
makes against its own values (see `migration.check_value`). `--check header` only checks
magic and version (the explicit lenient mode).

The synthetic stream keeps QEMU's outer framing (migration/savevm.c: QEMU_VM_FILE_MAGIC,
QEMU_VM_FILE_VERSION 3, a CONFIGURATION section naming the machine, START/PART/END sections
each closed by a SECTION_FOOTER, then QEMU_VM_EOF) with a body convention of our own, so a
receiver can tell a complete stream from a cut one and its payload is known (SHA-256 by
size and seed). All integers are big-endian:

    header   be32 0x5145564d "QEVM", be32 3
    config   u8 0x07, be32 n, n bytes machine name "xdrstream-synthetic"
    START    u8 0x01, be32 id=1, u8 3, "ram", be32 instance=0, be32 version=4,
             be32 body=8, be64 total stream size, footer
    PART*    u8 0x02, be32 id=1, be32 body>=8, be64 seq, body-8 payload bytes, footer
    END      u8 0x03, be32 id=1, be32 body>=8, be64 seq, body-8 payload bytes, footer
    EOF      u8 0x00                  (footer = u8 0x7e, be32 id; seq counts 0, 1, 2, ...)

For it `--check full` enforces all of this: a stream that ends before EOF is truncated,
bytes after EOF are rejected, and the size declared in START must match.

Faults, for tests of everything around the stub: `--fail-after N` (stop after N bytes and
exit with the fault exit code), `--close-early N` (close the stream fd after N bytes; an
outgoing stub then exits 0 having sent a short stream, an incoming one reports the error),
`--stall SECONDS [--stall-after N]` (pause once, after N bytes), `--exit-code C` (the exit
code of injected faults, default 1; given alone, the stub does its work and exits with C).

Exit codes: 0 whole stream accepted or written; 1 (or `--exit-code`) injected fault;
2 usage; 3 stream rejected; 4 I/O error (e.g. the other end closed the pipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Literal

from xdrstream.endpoints import migration
from xdrstream.endpoints.migration import MigrationError, MigrationParser, Summary
from xdrstream.endpoints.sink import (
    EndpointError,
    EndpointResult,
    Operation,
    StreamEndpoint,
    child_pipe,
    close_fd,
    spawn,
    stderr_file,
)

MAGIC = 0x5145564D  # "QEVM"
VERSION = 3
HEADER = struct.pack(">II", MAGIC, VERSION)
MACHINE_NAME = b"xdrstream-synthetic"

QEMU_VM_EOF = 0x00
QEMU_VM_SECTION_START = 0x01
QEMU_VM_SECTION_PART = 0x02
QEMU_VM_SECTION_END = 0x03
QEMU_VM_CONFIGURATION = 0x07
QEMU_VM_SECTION_FOOTER = 0x7E

SECTION_ID = 1
SECTION_NAME = b"ram"
INSTANCE_ID = 0
SECTION_VERSION = 4

SECTION_SIZE = 1 << 20
"""Bytes of one full PART section on the wire; also the stub's read and write size."""

_START = struct.Struct(">BIB3sIII")  # type, id, name length, name, instance, version, body
_PART = struct.Struct(">BII")  # type, id, body length
_SEQ = struct.Struct(">Q")
_FOOTER = struct.Struct(">BI")
_CONFIG = struct.Struct(">BI")

_START_SECTION = _START.size + _SEQ.size + _FOOTER.size
_DATA_OVERHEAD = _PART.size + _SEQ.size + _FOOTER.size
PAYLOAD_SIZE = SECTION_SIZE - _DATA_OVERHEAD
"""Payload bytes of one full PART section."""

MIN_SIZE = len(HEADER) + _CONFIG.size + len(MACHINE_NAME) + _START_SECTION + _DATA_OVERHEAD + 1
"""The smallest synthetic stream: header, config, START, an empty END, EOF."""

EXIT_OK = 0
EXIT_FAULT = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_IO = 4


class StreamRejected(Exception):
    """The incoming stream is not an acceptable migration stream; `offset` is where."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


# --- the synthetic stream -----------------------------------------------------------------


def _payload_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAYLOAD_SIZE)


def _layout(size: int) -> tuple[int, int]:
    """(full PART sections, payload bytes of END) for a stream of exactly `size` bytes."""
    if size < MIN_SIZE:
        raise ValueError(f"a synthetic migration stream has at least {MIN_SIZE} bytes, not {size}")
    return divmod(size - MIN_SIZE, SECTION_SIZE)


def iter_synthetic(size: int, seed: int) -> Iterator[memoryview]:
    """The synthetic stream of `size` bytes for `seed`, as views of a reused buffer.

    Each view is valid only until the next one is requested (the buffer is patched in place),
    so a consumer writes or hashes it at once. Same size and seed, same bytes.
    """
    full_sections, end_payload = _layout(size)
    block = _payload_block(seed)
    head = bytearray(HEADER)
    head += _CONFIG.pack(QEMU_VM_CONFIGURATION, len(MACHINE_NAME)) + MACHINE_NAME
    head += _START.pack(
        QEMU_VM_SECTION_START,
        SECTION_ID,
        len(SECTION_NAME),
        SECTION_NAME,
        INSTANCE_ID,
        SECTION_VERSION,
        _SEQ.size,
    )
    head += _SEQ.pack(size) + _FOOTER.pack(QEMU_VM_SECTION_FOOTER, SECTION_ID)
    yield memoryview(head)

    section = bytearray(SECTION_SIZE)
    _PART.pack_into(section, 0, QEMU_VM_SECTION_PART, SECTION_ID, _SEQ.size + PAYLOAD_SIZE)
    payload_at = _PART.size + _SEQ.size
    section[payload_at : payload_at + PAYLOAD_SIZE] = block
    _FOOTER.pack_into(section, SECTION_SIZE - _FOOTER.size, QEMU_VM_SECTION_FOOTER, SECTION_ID)
    view = memoryview(section)
    for seq in range(full_sections):
        _SEQ.pack_into(section, _PART.size, seq)
        yield view

    tail = bytearray(_PART.pack(QEMU_VM_SECTION_END, SECTION_ID, _SEQ.size + end_payload))
    tail += _SEQ.pack(full_sections) + block[:end_payload]
    tail += _FOOTER.pack(QEMU_VM_SECTION_FOOTER, SECTION_ID) + bytes([QEMU_VM_EOF])
    yield memoryview(tail)


def synthetic_sha256(size: int, seed: int) -> str:
    """SHA-256 (hex) of the synthetic stream, computed in-process."""
    digest = hashlib.sha256()
    for view in iter_synthetic(size, seed):
        digest.update(view)
    return digest.hexdigest()


def synthetic_bytes(size: int, seed: int) -> bytes:
    """The whole synthetic stream in memory (for tests and small files)."""
    return b"".join(bytes(view) for view in iter_synthetic(size, seed))


def write_synthetic(path: str | os.PathLike[str], size: int, seed: int) -> str:
    """Write the synthetic stream to a file; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for view in iter_synthetic(size, seed):
            digest.update(view)
            out.write(view)
    return digest.hexdigest()


# --- a real-format stream -------------------------------------------------------------------

REAL_MACHINE = b"pc-i440fx-7.2"
REAL_BLOCK = b"pc.ram"
REAL_SECTION_ID = 2  # where QEMU 7.2's pc machine puts "ram"
PAGES_PER_PART = 255  # ~1 MiB parts, like SECTION_SIZE
_PAGE = migration.TARGET_PAGE_SIZE


def real_format_size(ram_bytes: int, zero_every: int = 0) -> int:
    """Bytes of `iter_real_format(ram_bytes, seed, zero_every)`."""
    pieces = _real_format_pieces(ram_bytes)
    pages = ram_bytes // _PAGE
    parts = -(-pages // PAGES_PER_PART)
    per_part = len(pieces["part_head"]) + len(pieces["tail"])
    zeros = sum(_is_zero(index, zero_every) for index in range(min(pages, PAGES_PER_PART)))
    zeros *= pages // PAGES_PER_PART
    zeros += sum(_is_zero(index, zero_every) for index in range(pages % PAGES_PER_PART))
    return (
        len(pieces["head"])
        + parts * per_part
        + (pages - zeros) * (8 + _PAGE)
        + zeros * 9
        + len(pieces["name"])
        + len(pieces["end"])
    )


def _is_zero(slot: int, zero_every: int) -> bool:
    """Whether page `slot` of a part is a ZERO page (slot 0, which may name the block, never)."""
    if zero_every < 0 or zero_every == 1:
        raise ValueError(f"zero_every {zero_every}: 0 (no zero pages) or at least 2 needed")
    return bool(zero_every) and slot % zero_every == zero_every - 1


def _real_format_pieces(ram_bytes: int) -> dict[str, bytes]:
    if ram_bytes <= 0 or ram_bytes % _PAGE:
        raise ValueError(f"RAM of {ram_bytes} bytes: a positive multiple of {_PAGE} needed")
    be32, be64 = struct.Struct(">I"), struct.Struct(">Q")
    footer = _FOOTER.pack(QEMU_VM_SECTION_FOOTER, REAL_SECTION_ID)
    eos = be64.pack(migration.RAM_SAVE_FLAG_EOS)
    head = bytearray(HEADER)
    head += _CONFIG.pack(QEMU_VM_CONFIGURATION, len(REAL_MACHINE)) + REAL_MACHINE
    head += bytes([QEMU_VM_SECTION_START]) + be32.pack(REAL_SECTION_ID) + b"\x03ram"
    head += be32.pack(0) + be32.pack(migration.RAM_VERSION)
    head += be64.pack(ram_bytes | migration.RAM_SAVE_FLAG_MEM_SIZE)
    head += bytes([len(REAL_BLOCK)]) + REAL_BLOCK + be64.pack(ram_bytes) + eos + footer
    vmdesc = json.dumps({"page_size": _PAGE, "devices": []}).encode()
    end = bytes([QEMU_VM_SECTION_END]) + be32.pack(REAL_SECTION_ID) + eos + footer
    end += bytes([QEMU_VM_EOF, migration.QEMU_VM_VMDESCRIPTION]) + be32.pack(len(vmdesc))
    return {
        "head": bytes(head),
        "part_head": bytes([QEMU_VM_SECTION_PART]) + be32.pack(REAL_SECTION_ID),
        "name": bytes([len(REAL_BLOCK)]) + REAL_BLOCK,
        "tail": eos + footer,
        "end": end + vmdesc,
    }


def iter_real_format(ram_bytes: int, seed: int, zero_every: int = 0) -> Iterator[memoryview]:
    """A RAM-heavy stream in QEMU 7.2's real format (what `migration.MigrationParser` checks).

    A pc-i440fx-7.2 configuration, a RAM section ("ram" v4, section id 2) declaring one block
    `pc.ram` of `ram_bytes` (a multiple of 4096), its pages as QEMU 7.2 writes them: normal
    PAGEs (the first names the block, the rest CONTINUE) with our known payload (255 pages
    of seeded random bytes, repeated), and with `zero_every` N every Nth page of a part a
    CONTINUE ZERO page (flags 0x22, fill byte 0: what QEMU sends for an all-zero page), in
    PART sections of 255 pages (~1 MiB) with EOS and footers, END, EOF and a vmdesc without
    devices. Views of a reused buffer, valid until the next one is asked for.
    """
    pieces = _real_format_pieces(ram_bytes)
    payload = random.Random(seed).randbytes(PAGES_PER_PART * _PAGE)
    yield memoryview(pieces["head"])
    part_head, name, tail = pieces["part_head"], pieces["name"], pieces["tail"]
    pack = struct.Struct(">Q").pack_into
    pages = ram_bytes // _PAGE
    page_flags = migration.RAM_SAVE_FLAG_PAGE | migration.RAM_SAVE_FLAG_CONTINUE
    zero_flags = migration.RAM_SAVE_FLAG_ZERO | migration.RAM_SAVE_FLAG_CONTINUE
    # every part shares one template (slot k: payload page k, or a zero page) whose address
    # words alone are patched; the first part's first page names the block
    template = bytearray(part_head)
    slots = []  # (offset of the address word, flags) per slot
    for slot in range(PAGES_PER_PART):
        zero = _is_zero(slot, zero_every)
        slots.append((len(template), zero_flags if zero else page_flags))
        template += bytes(8)
        template += b"\0" if zero else payload[slot * _PAGE : (slot + 1) * _PAGE]
    ends = [at for at, _ in slots[1:]] + [len(template)]
    template += bytes(len(tail))
    view = memoryview(template)
    for start in range(0, pages, PAGES_PER_PART):
        count = min(PAGES_PER_PART, pages - start)
        for slot in range(count):
            at, flags = slots[slot]
            pack(template, at, (start + slot) * _PAGE | flags)
        stop = ends[count - 1]
        template[stop : stop + len(tail)] = tail
        if start:
            yield view[: stop + len(tail)]
        else:  # the first page names its block: PAGE without CONTINUE, then the name
            at = slots[0][0]
            first = bytearray(view[: stop + len(tail)])
            first[at : at + 8] = struct.pack(">Q", migration.RAM_SAVE_FLAG_PAGE)
            first[at + 8 : at + 8] = name
            yield memoryview(first)
    yield memoryview(pieces["end"])


def real_format_sha256(ram_bytes: int, seed: int, zero_every: int = 0) -> str:
    """SHA-256 (hex) of the real-format stream, computed in-process."""
    digest = hashlib.sha256()
    for view in iter_real_format(ram_bytes, seed, zero_every):
        digest.update(view)
    return digest.hexdigest()


# --- the checker --------------------------------------------------------------------------


class StreamChecker:
    """Incremental validator of an incoming migration stream (see the module docstring).

    `feed()` chunks as they arrive, then `finish()` at end of input; both raise
    `StreamRejected`. Fixed-size fields are gathered in a small buffer; bodies are skipped
    by counting, so the cost per MiB is a few Python operations.
    """

    def __init__(
        self,
        mode: Literal["full", "header"] = "full",
        receiver: dict[tuple[str, int], dict[str, Any]] | None = None,
    ) -> None:
        self.mode = mode
        self.receiver = receiver  # migration.receiver_state of the receiving machine's save
        self.offset = 0
        self.declared_size: int | None = None
        self.complete = False
        self._field = bytearray()
        self._need = len(HEADER)
        self._what = "file header"
        self._on_field: Callable[[bytes, int], None] = self._file_header
        self._skip = 0
        self._payload = 0
        self._accept_rest = False
        self._next_seq = 0
        self._section_type = 0
        self.real: MigrationParser | None = None
        self.summary: Summary | None = None

    def feed(self, data: memoryview) -> None:
        if self.real is not None:
            self._feed_real(data)
            return
        pos, end = 0, len(data)
        while pos < end:
            if self._accept_rest:
                self.offset += end - pos
                return
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                self.offset += step
                if not self._skip:
                    self._footer_field()
                continue
            if self.complete:
                raise StreamRejected("trailing bytes after QEMU_VM_EOF", self.offset)
            step = min(self._need - len(self._field), end - pos)
            self._field += data[pos : pos + step]
            pos += step
            self.offset += step
            if len(self._field) == self._need:
                field = bytes(self._field)
                self._field.clear()
                self._on_field(field, self.offset - self._need)
                if self.real is not None:  # a real QEMU stream: the rest is the parser's
                    self._feed_real(data[pos:])
                    return

    def _feed_real(self, data: memoryview) -> None:
        assert self.real is not None
        try:
            self.real.feed(data)
        except MigrationError as exc:
            raise StreamRejected(exc.detail, exc.offset) from None
        self.offset = self.real.offset

    def _to_real(self, prefix: bytes) -> None:
        """Not the synthetic machine: judge the stream as QEMU would, from its start."""
        self.real = MigrationParser(receiver=self.receiver)
        self._feed_real(memoryview(HEADER + prefix))

    def finish(self) -> None:
        if self.real is not None:
            try:
                self.summary = self.real.finish()
            except MigrationError as exc:
                raise StreamRejected(exc.detail, exc.offset) from None
            self.complete = True
            return
        if self.complete:
            return
        where = f"in the {self._what}"
        expected = f" of {self.declared_size}" if self.declared_size is not None else ""
        raise StreamRejected(
            f"truncated: input ended after {self.offset}{expected} bytes, {where}", self.offset
        )

    # Each handler gets a complete field and its offset, and says what comes next.
    def _expect(self, size: int, what: str, handler: Callable[[bytes, int], None]) -> None:
        self._need, self._what, self._on_field = size, what, handler

    def _file_header(self, field: bytes, at: int) -> None:
        magic, version = struct.unpack(">II", field)
        if magic != MAGIC:
            raise StreamRejected(
                f"bad magic 0x{magic:08x} {field[:4]!r}, expected 0x{MAGIC:08x} 'QEVM'", at
            )
        if version != VERSION:
            raise StreamRejected(
                f"unsupported stream version {version}, expected {VERSION}", at + 4
            )
        if self.mode == "header":
            self.complete = self._accept_rest = True
            return
        self._expect(_CONFIG.size, "configuration section", self._config)

    def _config(self, field: bytes, at: int) -> None:
        kind, length = _CONFIG.unpack(field)
        if kind != QEMU_VM_CONFIGURATION or length != len(MACHINE_NAME):
            self._to_real(field)
            return
        self._expect(length, "machine name", self._machine_name)

    def _machine_name(self, field: bytes, at: int) -> None:
        if field != MACHINE_NAME:
            self._to_real(_CONFIG.pack(QEMU_VM_CONFIGURATION, len(field)) + field)
            return
        self._expect(_START.size, "START section header", self._start)

    def _start(self, field: bytes, at: int) -> None:
        kind, section_id, name_len, name, instance, version, body = _START.unpack(field)
        if kind != QEMU_VM_SECTION_START:
            raise StreamRejected(f"expected QEMU_VM_SECTION_START 0x01, got 0x{kind:02x}", at)
        if (section_id, name_len, name) != (SECTION_ID, len(SECTION_NAME), SECTION_NAME):
            raise StreamRejected(
                f"START section {section_id} {name!r}: expected section {SECTION_ID} 'ram'", at
            )
        if (instance, version, body) != (INSTANCE_ID, SECTION_VERSION, _SEQ.size):
            raise StreamRejected(
                f"START section instance {instance} version {version} body {body}: expected "
                f"{INSTANCE_ID}, {SECTION_VERSION}, {_SEQ.size}",
                at + 9,
            )
        self._expect(_SEQ.size, "START section body", self._start_body)

    def _start_body(self, field: bytes, at: int) -> None:
        (self.declared_size,) = _SEQ.unpack(field)
        if self.declared_size < MIN_SIZE:
            raise StreamRejected(f"declared stream size {self.declared_size} < {MIN_SIZE}", at)
        self._section_type = QEMU_VM_SECTION_START
        self._expect(_FOOTER.size, "section footer", self._footer)

    def _footer_field(self) -> None:
        self._expect(_FOOTER.size, "section footer", self._footer)

    def _footer(self, field: bytes, at: int) -> None:
        kind, section_id = _FOOTER.unpack(field)
        if (kind, section_id) != (QEMU_VM_SECTION_FOOTER, SECTION_ID):
            raise StreamRejected(
                f"bad section footer 0x{kind:02x} id {section_id}, expected 0x7e id {SECTION_ID}",
                at,
            )
        if self._section_type == QEMU_VM_SECTION_END:
            self._expect(1, "QEMU_VM_EOF marker", self._eof)
        else:
            self._expect(_PART.size, "PART or END section header", self._data_section)

    def _data_section(self, field: bytes, at: int) -> None:
        kind, section_id, body = _PART.unpack(field)
        if kind not in (QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END):
            raise StreamRejected(
                f"expected QEMU_VM_SECTION_PART 0x02 or _END 0x03, got 0x{kind:02x}", at
            )
        if section_id != SECTION_ID:
            raise StreamRejected(f"section id {section_id}, expected {SECTION_ID}", at + 1)
        assert self.declared_size is not None
        room = self.declared_size - (at + _PART.size + _FOOTER.size + 1)
        if not _SEQ.size <= body <= room:
            raise StreamRejected(
                f"section body length {body} not in {_SEQ.size}..{room} "
                f"(declared stream size {self.declared_size})",
                at + 5,
            )
        self._section_type = kind
        self._payload = body - _SEQ.size
        self._expect(_SEQ.size, "section sequence number", self._sequence)

    def _sequence(self, field: bytes, at: int) -> None:
        (seq,) = _SEQ.unpack(field)
        if seq != self._next_seq:
            raise StreamRejected(f"section sequence {seq}, expected {self._next_seq}", at)
        self._next_seq += 1
        self._what = "section payload"
        self._skip = self._payload
        if not self._skip:
            self._footer_field()

    def _eof(self, field: bytes, at: int) -> None:
        if field[0] != QEMU_VM_EOF:
            raise StreamRejected(f"expected QEMU_VM_EOF 0x00, got 0x{field[0]:02x}", at)
        if self.offset != self.declared_size:
            raise StreamRejected(
                f"stream ended at {self.offset} bytes, START declared {self.declared_size}", at
            )
        self.complete = True


# --- the stub process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Fault injection options, shared by both roles (see the module docstring)."""

    fail_after: int | None = None
    close_early: int | None = None
    stall: float | None = None
    stall_after: int = 0
    exit_code: int | None = None

    def to_args(self) -> list[str]:
        args: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not (field.name == "stall_after" and self.stall is None):
                args += ["--" + field.name.replace("_", "-"), str(value)]
        return args

    @property
    def fault_exit(self) -> int:
        return EXIT_FAULT if self.exit_code is None else self.exit_code

    def limit(self) -> int | None:
        """Bytes after which the stub stops moving data (fail or close), if any."""
        limits = [n for n in (self.fail_after, self.close_early) if n is not None]
        return min(limits) if limits else None


class _Report:
    def __init__(self, role: str) -> None:
        self.role = role
        self.bytes = 0
        self.digest = hashlib.sha256()

    def line(self, ok: bool, error: str | None) -> str:
        return json.dumps(
            {
                "role": self.role,
                "ok": ok,
                "bytes": self.bytes,
                "sha256": self.digest.hexdigest(),
                "error": error,
            }
        )


class _FaultClock:
    """Where the injected faults fall: cuts chunks at fault points, stalls once."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.limit = faults.limit()
        self._stall_at = faults.stall_after if faults.stall is not None else None

    def next_chunk(self, done: int, want: int) -> int:
        """Stall if due, then how many bytes to move so fault points fall on chunk edges."""
        if self._stall_at is not None and done >= self._stall_at:
            assert self.faults.stall is not None
            time.sleep(self.faults.stall)
            self._stall_at = None
        for edge in (self.limit, self._stall_at):
            if edge is not None and done < edge:
                want = min(want, edge - done)
        return want

    def stop_reason(self, done: int) -> str | None:
        """None while data may flow; else 'close' or 'fail'."""
        if self.limit is None or done < self.limit:
            return None
        return "close" if self.limit == self.faults.close_early else "fail"


def run_incoming(
    fd: int,
    mode: Literal["full", "header"],
    faults: Faults,
    receiver: dict[tuple[str, int], dict[str, Any]] | None = None,
) -> tuple[int, str]:
    """Read and check a stream from `fd`; returns (exit code, report line).

    SHA-256 is the stub's largest cost (~0.4 s/GiB against ~0.05 for the check): a second
    thread hashes each chunk (hashlib releases the GIL) while this one reads and checks the
    next, into the other of two buffers, so the stub is not a restore's bottleneck.
    """
    report = _Report("incoming")
    checker = StreamChecker(mode, receiver)
    views = [memoryview(bytearray(SECTION_SIZE)) for _ in range(2)]
    turn = 0
    hasher = ThreadPoolExecutor(1, thread_name_prefix="qemu_stub-sha256")
    hashed: Future[None] | None = None
    clock = _FaultClock(faults)
    source = open(fd, "rb", buffering=0)  # noqa: SIM115 - closed below, maybe early
    try:
        while True:
            stop = clock.stop_reason(report.bytes)
            if stop is not None:
                source.close()
                action = "closed the stream early" if stop == "close" else "failed"
                why = f"{action} after {report.bytes} bytes (fault injection)"
                hasher.shutdown()
                return faults.fault_exit, report.line(False, why)
            want = clock.next_chunk(report.bytes, SECTION_SIZE)
            count = source.readinto(views[turn][:want])
            if not count:
                break
            chunk = views[turn][:count]
            turn ^= 1
            if hashed is not None:
                hashed.result()  # the other buffer is free again once its chunk is hashed
            hashed = hasher.submit(report.digest.update, chunk)
            report.bytes += count
            checker.feed(chunk)
        checker.finish()
    except StreamRejected as exc:
        hasher.shutdown()
        return EXIT_REJECTED, report.line(False, f"stream rejected: {exc}")
    except OSError as exc:
        hasher.shutdown()
        return EXIT_IO, report.line(False, f"read error after {report.bytes} bytes: {exc}")
    finally:
        source.close()
    hasher.shutdown()
    if faults.exit_code is not None and faults.exit_code != 0:
        return faults.exit_code, report.line(False, f"exit code {faults.exit_code} (injected)")
    return EXIT_OK, report.line(True, None)


def iter_file(path: str | os.PathLike[str]) -> Iterator[memoryview]:
    """A recorded stream (e.g. a real QEMU save), as views of a reused 1 MiB buffer."""
    buffer = bytearray(SECTION_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as source:
        while count := source.readinto(buffer):
            yield view[:count]


def run_outgoing(
    fd: int, size: int, seed: int, faults: Faults, source: str | None = None
) -> tuple[int, str]:
    """Write the synthetic stream (or the file `source`) to `fd`; returns (code, report)."""
    report = _Report("outgoing")
    clock = _FaultClock(faults)
    sink = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed below, maybe early
    try:
        sections = iter_synthetic(size, seed) if source is None else iter_file(source)
        for section in sections:
            view = section
            while view:
                stop = clock.stop_reason(report.bytes)
                if stop == "close":  # a short stream that looks like success
                    sink.close()
                    return EXIT_OK, report.line(True, None)
                if stop == "fail":
                    why = f"failed after {report.bytes} bytes (fault injection)"
                    return faults.fault_exit, report.line(False, why)
                want = clock.next_chunk(report.bytes, len(view))
                written = sink.write(view[:want])
                assert written is not None  # blocking fd
                report.digest.update(view[:written])
                report.bytes += written
                view = view[written:]
    except OSError as exc:
        return EXIT_IO, report.line(False, f"write error after {report.bytes} bytes: {exc}")
    finally:
        sink.close()
    if faults.exit_code is not None and faults.exit_code != 0:
        return faults.exit_code, report.line(False, f"exit code {faults.exit_code} (injected)")
    return EXIT_OK, report.line(True, None)


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xdrstream.endpoints.qemu_stub",
        description="A QEMU stand-in at the end of a migration stream pipe.",
    )
    roles = parser.add_subparsers(dest="role", required=True)
    incoming = roles.add_parser("incoming", help="read and check a stream (like -incoming fd:N)")
    incoming.add_argument("--fd", type=_nonnegative, default=0, help="stream fd (default 0)")
    incoming.add_argument(
        "--check",
        choices=("full", "header"),
        default="full",
        help="full: judge it as QEMU 7.2 would (real or synthetic format); header: magic, version",
    )
    incoming.add_argument(
        "--receiver",
        metavar="FILE",
        help="a save made by the receiving machine: device fields QEMU compares with its own "
        "values ('... equal', 'int32 le', PCI config ids) are checked against it",
    )
    outgoing = roles.add_parser("outgoing", help="write a stream (like migrate fd:)")
    outgoing.add_argument("--fd", type=_nonnegative, default=1, help="stream fd (default 1)")
    what = outgoing.add_mutually_exclusive_group(required=True)
    what.add_argument("--size", type=_nonnegative, help="bytes of the synthetic stream")
    what.add_argument(
        "--from", dest="source", metavar="FILE", help="replay a recorded stream (a real save)"
    )
    outgoing.add_argument("--seed", type=int, default=0, help="payload seed (default 0)")
    for role in (incoming, outgoing):
        report = role.add_mutually_exclusive_group()
        report.add_argument("--report-fd", type=_nonnegative, help="fd for the JSON report line")
        report.add_argument("--report", metavar="PATH", help="file for the JSON report line")
        role.add_argument("--fail-after", type=_nonnegative, metavar="N")
        role.add_argument("--close-early", type=_nonnegative, metavar="N")
        role.add_argument("--stall", type=float, metavar="SECONDS")
        role.add_argument("--stall-after", type=_nonnegative, default=0, metavar="N")
        role.add_argument("--exit-code", type=int, metavar="C")
    return parser


def _write_report(args: argparse.Namespace, line: str) -> None:
    data = (line + "\n").encode()
    if args.report is not None:
        with open(args.report, "wb") as out:
            out.write(data)
        return
    if args.report_fd is not None:
        fd = args.report_fd
    else:
        fd = 2 if args.role == "outgoing" and args.fd == 1 else 1
    try:
        os.write(fd, data)
    except OSError as exc:
        print(f"qemu_stub: cannot write report to fd {fd}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    faults = Faults(
        fail_after=args.fail_after,
        close_early=args.close_early,
        stall=args.stall,
        stall_after=args.stall_after,
        exit_code=args.exit_code,
    )
    if args.role == "incoming":
        receiver = None
        if args.receiver is not None:
            try:
                with open(args.receiver, "rb") as saved:
                    receiver = migration.receiver_state(saved.read())
            except (OSError, MigrationError) as exc:
                parser.error(f"--receiver {args.receiver}: {exc}")
        code, line = run_incoming(args.fd, args.check, faults, receiver)
    else:
        if args.source is not None and not os.path.isfile(args.source):
            parser.error(f"--from {args.source}: no such file")
        if args.source is None and args.size < MIN_SIZE:
            parser.error(f"--size: a synthetic stream has at least {MIN_SIZE} bytes")
        code, line = run_outgoing(args.fd, args.size or 0, args.seed, faults, args.source)
    _write_report(args, line)
    return code


# --- the launcher -------------------------------------------------------------------------


class StubEndpoint(StreamEndpoint):
    """The stub as a child process; its verdict is its report line and exit status."""

    def __init__(
        self,
        operation: Operation,
        process: subprocess.Popen[bytes],
        fd: int,
        stderr: IO[bytes],
        report_fd: int,
    ) -> None:
        super().__init__(operation, process, fd, stderr)
        self._report_fd = report_fd

    def _verdict(self, timeout: float | None) -> EndpointResult:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"QEMU stub (pid {self.process.pid}) gave no verdict within {timeout} s"
            ) from None
        # the child has exited, so the report pipe has no writer left: this read ends
        chunks = []
        while chunk := os.read(self._report_fd, 65536):
            chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "replace").strip()
        try:
            report = json.loads(text)
            ok, count, digest, error = (
                report["ok"],
                report["bytes"],
                report["sha256"],
                report["error"],
            )
        except (ValueError, KeyError, TypeError):
            stderr = self.stderr_tail() or "no stderr output"
            return EndpointResult(
                ok=False,
                error=f"QEMU stub exited with code {code} without a report: {stderr}",
                exit_code=code,
            )
        if code != 0 and error is None:
            error = f"QEMU stub exited with code {code}"
        return EndpointResult(
            ok=bool(ok) and code == 0, bytes=count, sha256=digest, error=error, exit_code=code
        )

    def _release_extra(self) -> None:
        if self._report_fd >= 0:
            fd, self._report_fd = self._report_fd, -1
            close_fd(fd)


def _start_stub(operation: Operation, role_args: list[str], python: str) -> StubEndpoint:
    child_fd, parent_fd = child_pipe(operation)
    report_read, report_write = os.pipe()
    role = "incoming" if operation is Operation.RESTORE else "outgoing"
    command = [python, "-m", "xdrstream.endpoints.qemu_stub", role, "--fd", str(child_fd)]
    command += ["--report-fd", str(report_write), *role_args]
    stderr = stderr_file()
    try:
        process = spawn(command, stderr, (child_fd, report_write), "the QEMU stub")
    except EndpointError:
        for fd in (child_fd, parent_fd, report_read):
            close_fd(fd)
        stderr.close()
        raise
    finally:
        close_fd(report_write)
    close_fd(child_fd)
    return StubEndpoint(operation, process, parent_fd, stderr, report_read)


def start_stub_restore(
    *, check: Literal["full", "header"] = "full", faults: Faults = Faults(), python: str = ""
) -> StubEndpoint:
    """Start `qemu_stub incoming` reading a pipe; write the stream into `.fd`, then wait()."""
    args = ["--check", check, *faults.to_args()]
    return _start_stub(Operation.RESTORE, args, python or sys.executable)


def start_stub_save(
    size: int,
    seed: int = 0,
    *,
    faults: Faults = Faults(),
    python: str = "",
    source: str | None = None,
) -> StubEndpoint:
    """Start `qemu_stub outgoing` writing a pipe; read `.fd` to EOF, then wait().

    The stream is the synthetic one of `size` bytes, or the recorded file `source`.
    """
    if source is not None:
        if not os.path.isfile(source):
            raise EndpointError(f"the stub's save stream {source!r}: no such file")
        args = ["--from", os.path.abspath(source), *faults.to_args()]
    else:
        _layout(size)  # a size too small is the caller's error, raised here
        args = ["--size", str(size), "--seed", str(seed), *faults.to_args()]
    return _start_stub(Operation.SAVE, args, python or sys.executable)


@dataclass(frozen=True)
class StubLauncher:
    """Starts stub endpoints (`sink.EndpointLauncher`).

    Saves emit the synthetic stream of `save_size` bytes, or replay the file `save_from`
    (a recorded real QEMU save: then `save_size` and `seed` do not apply).
    """

    check: Literal["full", "header"] = "full"
    save_size: int = 64 << 20
    seed: int = 0
    faults: Faults = Faults()
    python: str = ""
    save_from: str | None = None

    def restore(self) -> StubEndpoint:
        return start_stub_restore(check=self.check, faults=self.faults, python=self.python)

    def save(self) -> StubEndpoint:
        return start_stub_save(
            self.save_size,
            self.seed,
            faults=self.faults,
            python=self.python,
            source=self.save_from,
        )


if __name__ == "__main__":
    sys.exit(main())
