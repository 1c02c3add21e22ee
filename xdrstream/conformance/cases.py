"""The catalogue's server cases (see :mod:`xdrstream.conformance.catalogue`).

Positive cases drive a client-role engine (:class:`~xdrstream.protocol.Connection`) that
judges every frame the server sends against spec.md's state tables; negative cases craft
raw frames the engine would refuse to send. Uploads carry the QEMU stub's synthetic
migration stream (the reference server feeds it to the stub, which accepts only a whole,
well-formed stream); downloads ask for ``SIZE:SEED`` (the stub produces that stream) and
compare length and SHA-256 with the expected one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from xdrstream.conformance.catalogue import (
    ANY,
    LIBVIRT,
    Context,
    Deviation,
    Implementation,
    Skip,
    case,
)
from xdrstream.conformance.fixtures import FixtureError
from xdrstream.conformance.peer import Closed, Peer, Silence, Violation
from xdrstream.endpoints.qemu_stub import synthetic_bytes, synthetic_sha256
from xdrstream.protocol import bodies, programs_from_schema, schemas
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    KeepalivePing,
    KeepalivePong,
    Reply,
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamError,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.framing import (
    KEEPALIVE_PING,
    KEEPALIVE_PROGRAM,
    KEEPALIVE_VERSION,
    LEGACY_STREAM_PAYLOAD,
    MAX_FRAME,
    Frame,
    Header,
    MessageStatus,
    MessageType,
    pack_frame,
)

# numbers from the schemas (issue 10: a fact is written once)
_XS = schemas.load("restore").constants
_LV = schemas.load("libvirt_remote").constants
PROG, VERS = int(_XS["XS_RESTORE_PROGRAM"]), int(_XS["XS_RESTORE_V1"])
PING, ECHO, INFO = (int(_XS[f"XS_PROC_{n}"]) for n in ("PING", "ECHO", "GET_INFO"))
RESTORE_PROC = {v: int(_XS[f"XS_PROC_RESTORE_V{v}"]) for v in (1, 2, 3)}
SAVE_PROC = {v: int(_XS[f"XS_PROC_SAVE_V{v}"]) for v in (1, 2, 3)}
RESTORE_DENSE, SAVE_DENSE = int(_XS["XS_PROC_RESTORE_DENSE"]), int(_XS["XS_PROC_SAVE_DENSE"])
LIBVIRT_PROG = int(_LV["REMOTE_PROGRAM"])
LV_OPEN, LV_AUTH_LIST, LV_DOMAIN_LOOKUP, LV_POOL_LOOKUP = (
    int(_LV[n])
    for n in ("CONNECT_OPEN", "AUTH_LIST", "DOMAIN_LOOKUP_BY_NAME", "STORAGE_POOL_LOOKUP_BY_NAME")
)
LV_VOL_LOOKUP, LV_UPLOAD, LV_DOWNLOAD, LV_SCREENSHOT = (
    int(_LV[n])
    for n in (
        "STORAGE_VOL_LOOKUP_BY_NAME",
        "STORAGE_VOL_UPLOAD",
        "STORAGE_VOL_DOWNLOAD",
        "DOMAIN_SCREENSHOT",
    )
)

IMAGE_SIZE = 200_000
IMAGE_SEED = 7
CHUNK = 65536

CALL, REPLY, MESSAGE, STREAM, HOLE = (
    MessageType.CALL,
    MessageType.REPLY,
    MessageType.MESSAGE,
    MessageType.STREAM,
    MessageType.STREAM_HOLE,
)
OK, ERROR, CONTINUE = MessageStatus.OK, MessageStatus.ERROR, MessageStatus.CONTINUE


# ---- what libvirtd 9.0 is known to do instead (outcome "deviation", see catalogue) ----------
# libvirtd is lenient where spec.md makes a protocol error of a frame: it drops or answers
# the frame and keeps the connection. Each entry names what it does and where (libvirt's
# src/rpc/virnetserverclient.c, virnetserverprogram.c, daemon/remote_daemon_stream.c).
def _libvirtd(behaviour: str) -> Deviation:
    return Deviation("libvirtd", behaviour, "9.0.0")


_LV_UNKNOWN_TYPE = _libvirtd("ignores a frame with an unknown message type and goes on")
_LV_STATUS = _libvirtd("answers a CALL whose status is not OK with an ERROR reply and goes on")


# ``xdrstream serve --libvirt-storage`` stands in for libvirtd and decodes arguments as it
# does (issue 16 part 0: libtirpc-lenient unless --strict), so it shares these two.
def _ours_as_libvirtd(behaviour: str) -> Deviation:
    return Deviation("xdrstream", f"as libvirtd, by design: {behaviour}", "9.0.0")


_LV_TRAILING = _libvirtd(
    "ignores bytes after a call's arguments (its XDR decoders do not check the end)"
)
_LV_KEEPALIVE = _libvirtd(
    "checks only program, version and procedure of a keepalive message (payload and serial "
    "are ignored)"
)
_LV_DROPS = _libvirtd(
    "drops a stream frame that matches no open stream by serial and procedure "
    '("Ignoring unexpected stream data") and goes on'
)
_LV_EMPTY = _libvirtd("accepts an empty STREAM/CONTINUE from the client")
_LV_BAD_HOLE = _libvirtd(
    "answers a bad STREAM_HOLE (flags, negative length) with an ERROR reply on the stream's "
    "serial and goes on"
)
_LV_ABORT_BODY = _libvirtd("ignores the payload of a client abort and confirms it")
_LV_EVENT_SERIAL = _libvirtd(
    "sends event MESSAGEs with serial 1, not 0 (remoteDispatchObjectEventSend)"
)


# ---- encoding helpers -----------------------------------------------------------------------
def _restore_schema() -> Any:
    return schemas.load("restore")


def _procedure(proc: int) -> Any:
    return programs_from_schema(_restore_schema())[0].procedures[proc]


def restore_args(name: str = "conformance", flags: int = 0) -> Any:
    return _restore_schema()["xs_restore_args"](name=name, size_hint=0, flags=flags)


def save_args(name: str, flags: int = 0) -> Any:
    return _restore_schema()["xs_save_args"](name=name, flags=flags)


def pack_args(proc: int, value: Any) -> bytes:
    return bytes(_procedure(proc).arg.pack(value))


def raw(
    proc: int,
    mtype: int,
    serial: int,
    status: int = OK,
    payload: bytes = b"",
    prog: int = PROG,
    vers: int = VERS,
) -> bytes:
    return pack_frame(Header(prog, vers, proc, mtype, serial, status), payload)


def image(size: int = IMAGE_SIZE, seed: int = IMAGE_SEED) -> bytes:
    return synthetic_bytes(size, seed)


def chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def probe_call(ctx: Context, serial: int, payload: bytes = b"") -> bytes:
    """A call any target answers: PING of restore.x, AUTH_LIST of libvirt's program (both
    without arguments: ``payload`` makes a call whose arguments do not decode)."""
    if ctx.program == "libvirt":
        return raw(LV_AUTH_LIST, CALL, serial, OK, payload, prog=LIBVIRT_PROG)
    return raw(PING, CALL, serial, OK, payload)


# ---- waiting helpers ------------------------------------------------------------------------
def wait_frame(peer: Peer, serial: int, mtypes: Sequence[int], what: str) -> Frame:
    """Skip frames of other exchanges and keepalive until one of ``mtypes`` for ``serial``."""
    while True:
        try:
            frame = peer.frame(what=what)
        except Closed:
            raise Violation(f"the connection closed while waiting for {what}") from None
        header = frame.header
        if header.prog == KEEPALIVE_PROGRAM and header.type == MESSAGE:
            continue
        if header.serial == serial and header.type in mtypes:
            return frame


def alive(peer: Peer, ctx: Context, section: str, serial: int = 0x40000000) -> None:
    """The connection still works: a call sent now is answered (raw, fresh serial)."""
    try:
        peer.send_raw(probe_call(ctx, serial))
        frame = wait_frame(peer, serial, [REPLY], "the reply to a probe call")
    except (Violation, Closed) as exc:
        raise Violation(f"{section}: the connection must continue, but: {exc}") from None
    if ctx.program == "restore" and frame.header.status != OK:
        raise Violation(f"{section}: the probe PING failed: {_error_text(frame)}")


def _error_text(frame: Frame) -> str:
    try:
        error = bodies.unpack_error(frame.payload)
    except Exception as exc:
        return f"(error body does not decode: {exc})"
    return f"code {error.code} domain {error.domain}: {error.message}"


def expect_error_reply(peer: Peer, serial: int, section: str) -> Frame:
    frame = wait_frame(peer, serial, [REPLY], f"an ERROR reply to serial {serial}")
    if frame.header.status != ERROR:
        raise Violation(f"{section}: expected an ERROR reply, got status {frame.header.status}")
    try:
        error = bodies.unpack_error(frame.payload)
    except Exception as exc:
        raise Violation(f"§4.5: the error body does not decode: {exc}") from None
    if error.code == 0:
        raise Violation("§4.5: the error body has code 0 (no error)")
    return frame


def open_raw(peer: Peer, proc: int, serial: int, args: bytes, prog: int = PROG) -> None:
    """Open a V1/V2 stream with raw frames: call, then wait for its OK reply."""
    peer.send_raw(raw(proc, CALL, serial, OK, args, prog))
    frame = wait_frame(peer, serial, [REPLY], "the primary reply")
    if frame.header.status != OK:
        raise Violation(f"the primary call failed: {_error_text(frame)}")


def call(peer: Peer, proc: int, args: Any = None, prog: int = PROG, vers: int = VERS) -> int:
    """Send a call through the engine on a fresh serial; returns the serial."""
    serial = peer.engine.next_serial()
    peer.send(Call(serial, prog, vers, proc, args))
    return serial


def wait_for(peer: Peer, types: type | tuple[type, ...], what: str) -> Any:
    """Skip the engine's events until one of ``types`` (late data, acknowledgements)."""
    while True:
        event = peer.event(what=what)
        if isinstance(event, types):
            return event


# ---- engine-driven transfers ----------------------------------------------------------------
Item = bytes | int  # data, or a hole of that many bytes


def upload(
    peer: Peer,
    variant: int,
    items: Iterable[Item],
    proc: int | None = None,
    args: Any = None,
    between: Any = None,
    prog: int = PROG,
) -> Any:
    """A whole upload through the engine; returns the final result (V2: the reply's)."""
    proc = RESTORE_PROC[variant] if proc is None else proc
    serial = call(peer, proc, restore_args() if args is None else args, prog)
    result = None
    if variant in (1, 2):
        reply = peer.expect_event((Reply, ErrorReply), "the primary reply")
        if isinstance(reply, ErrorReply):
            raise Violation(f"the server refused the upload: {reply.error}")
        result = reply.result
    for index, item in enumerate(items):
        if variant == 1:
            info = peer.engine.stream_info(serial)
            while info is not None and info.window == 0:
                event = peer.expect_event((StreamAck, StreamError), "a V1 acknowledgement")
                if isinstance(event, StreamError):
                    raise Violation(f"the server failed the upload: {event.error}")
                info = peer.engine.stream_info(serial)
        if isinstance(item, int):
            peer.send(StreamHole(serial, item))
        else:
            peer.send(StreamData(serial, item))
        if between is not None:
            between(peer, index)
    peer.send(StreamFinish(serial))
    while True:
        event = peer.event(what="the end of the upload")
        if variant == 1 and isinstance(event, StreamAck):
            continue
        if variant in (1, 2) and isinstance(event, StreamConfirm):
            return result
        if variant == 3 and isinstance(event, Reply):
            return event.result
        raise Violation(f"expected the upload's confirmation, got {event!r}"[:300])


def download(
    peer: Peer,
    variant: int,
    name: str,
    proc: int | None = None,
    on_data: Any = None,
    args: Any = None,
    prog: int = PROG,
) -> tuple[int, str, Any]:
    """A whole download through the engine; returns (bytes, sha256 with holes as zeros,
    result)."""
    proc = SAVE_PROC[variant] if proc is None else proc
    serial = call(peer, proc, save_args(name) if args is None else args, prog)
    result = None
    if variant in (1, 2):
        reply = peer.expect_event((Reply, ErrorReply), "the primary reply")
        if isinstance(reply, ErrorReply):
            raise Violation(f"the server refused the download: {reply.error}")
        result = reply.result
    digest = hashlib.sha256()
    total = 0
    while True:
        if variant == 1:
            info = peer.engine.stream_info(serial)
            while info is not None and info.state == "OPEN" and info.window > 0:
                peer.send(StreamRead(serial, bodies.V1_CHUNK_MAX))
                info = peer.engine.stream_info(serial)
        event = peer.event(what="download data")
        if isinstance(event, StreamData):
            digest.update(event.data)
            total += len(event.data)
            if on_data is not None:
                on_data(peer, total)
        elif isinstance(event, StreamHole):
            digest.update(bytes(event.length))
            total += event.length
        elif isinstance(event, StreamEnd):
            break
        elif isinstance(event, (StreamError, ErrorReply)):
            raise Violation(f"the server failed the download: {event.error}")
        else:
            raise Violation(f"unexpected {event!r} during a download"[:300])
    if variant in (1, 2):
        peer.send(StreamFinish(serial))
        peer.expect_event(StreamConfirm, "the confirmation of StreamFinish")
    else:
        reply = peer.expect_event((Reply, ErrorReply), "the V3 reply after the end of data")
        if isinstance(reply, ErrorReply):
            raise Violation(f"the V3 download ended with an error: {reply.error}")
        result = reply.result
    return total, digest.hexdigest(), result


def check_download(
    peer: Peer, variant: int, size: int, section: str, proc: int | None = None
) -> Any:
    total, sha, result = download(peer, variant, f"{size}:{IMAGE_SEED}", proc)
    if total != size or sha != synthetic_sha256(size, IMAGE_SEED):
        raise Violation(
            f"{section}: received {total} bytes (SHA-256 {sha[:16]}...), expected {size} "
            f"bytes of the endpoint's stream"
        )
    if variant == 3 and getattr(result, "length", size) != size:  # V1/V2: the primary reply
        raise Violation(f"{section}: the result says {result.length} bytes, sent {size}")
    return result


def check_upload(peer: Peer, variant: int, items: Sequence[Item], section: str, **kw: Any) -> None:
    result = upload(peer, variant, items, **kw)
    size = sum(i if isinstance(i, int) else len(i) for i in items)
    if variant == 3:  # V1/V2 results come with the primary reply, before the data
        length = getattr(result, "length", None)
        if length is not None and length != size:
            raise Violation(f"{section}: the server stored {length} bytes, {size} were sent")


def with_hole(data: bytes, start: int, length: int) -> list[Item]:
    """``data`` with [start, start+length) sent as a hole (the stub skips payload bytes)."""
    return [*chunks(data[:start]), length, *chunks(data[start + length :])]


# ---- the target program's V2 streams --------------------------------------------------------
class Kit:
    """One connection ready for V2 streams of the target's program, and what cases send.

    restore.x: RESTORE_V2 (sparse) or RESTORE_DENSE uploads reach the endpoint, which accepts
    only the whole synthetic stream; SAVE_V2 downloads ``SIZE:SEED`` from it.
    libvirt: STORAGE_VOL_UPLOAD/DOWNLOAD of a fresh volume the suite made (allocation 0, see
    :mod:`.fixtures`): every byte sequence is accepted, and a download returns what was
    written (zeros elsewhere), so uploads are checked by downloading them again.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.libvirt = ctx.program == "libvirt"
        self.prog = LIBVIRT_PROG if self.libvirt else PROG
        self.written = bytearray()
        if self.libvirt:
            self.peer, self.schema, self.vol = _libvirt_fresh_volume(ctx)
            self.up, self.down = LV_UPLOAD, LV_DOWNLOAD
        else:
            self.peer = ctx.connect()
            self.up, self.down = RESTORE_PROC[2], SAVE_PROC[2]

    # -- arguments -----------------------------------------------------------------------
    def transfer(self, length: int = 0, sparse: bool = False, vol: Any = None) -> Any:
        return self.schema["vir_vol_transfer_args"](
            vol=self.vol if vol is None else vol, offset=0, length=length, flags=int(sparse)
        )

    def up_proc(self, sparse: bool = True) -> int:
        return self.up if self.libvirt or sparse else RESTORE_DENSE

    def up_args(self, sparse: bool = True) -> Any:
        return self.transfer(sparse=sparse) if self.libvirt else restore_args()

    def refused_up_args(self, length: int = 1000) -> Any:
        """An upload the server accepts, then fails: libvirt's volume stream ends after
        ``length`` bytes (more data fails with ENOSPC); restore.x's endpoint refuses a cut
        stream at the finish."""
        return self.transfer(length=length) if self.libvirt else restore_args()

    def bad_up_args(self) -> Any:
        """An upload refused at its call: a volume that does not exist, a bad flag."""
        if self.libvirt:
            vol = self.schema["vir_vol"](pool=self.vol.pool, name="no-such-volume", key="/none")
            return self.transfer(vol=vol)
        return restore_args(flags=1)

    def down_args(self, size: int) -> Any:
        return self.transfer(length=size) if self.libvirt else save_args(f"{size}:{IMAGE_SEED}")

    def packed(self, proc: int, value: Any) -> bytes:
        codec = self.ctx.programs()[0].procedures[proc].arg
        assert codec is not None, f"procedure {proc} takes arguments"
        return bytes(codec.pack(value))

    def raw(self, mtype: int, serial: int, status: int = OK, payload: bytes = b"",
            proc: int | None = None) -> bytes:  # fmt: skip
        return raw(self.up if proc is None else proc, mtype, serial, status, payload, self.prog)

    def open_raw(self, serial: int, sparse: bool = True) -> int:
        """Open an upload with raw frames on ``serial``; returns its procedure."""
        proc = self.up_proc(sparse)
        open_raw(self.peer, proc, serial, self.packed(proc, self.up_args(sparse)), self.prog)
        return proc

    def ping(self) -> None:
        """A plain call answered by the target (restore PING, libvirt GET_LIB_VERSION)."""
        proc = _lv("CONNECT_GET_LIB_VERSION") if self.libvirt else PING
        call(self.peer, proc, None, self.prog)
        wait_for(self.peer, Reply, "the reply to a plain call")

    # -- transfers -------------------------------------------------------------------------
    def data(self, size: int = IMAGE_SIZE) -> bytes:
        return image(size)

    def upload(self, items: Sequence[Item], section: str, sparse: bool = True, **kw: Any) -> None:
        """A whole V2 upload; libvirt: then downloaded again and compared."""
        args = self.up_args(sparse)
        check_upload(self.peer, 2, items, section, proc=self.up_proc(sparse), args=args,
                     prog=self.prog, **kw)  # fmt: skip
        if self.libvirt:
            sent = b"".join(bytes(i) if isinstance(i, int) else i for i in items)
            self.written = bytearray(sent)
            total, sha, _ = download(self.peer, 2, "", self.down, args=self.transfer(len(sent)),
                                     prog=self.prog)  # fmt: skip
            if total != len(sent) or sha != hashlib.sha256(sent).hexdigest():
                raise Violation(
                    f"{section}: the volume holds other bytes than the {len(sent)} uploaded "
                    f"(downloaded {total} bytes, SHA-256 {sha[:16]}...)"
                )

    def prepare(self, size: int) -> None:
        """libvirt: write ``size`` bytes of the image to the volume, so that downloads have
        something to compare (restore.x: the endpoint makes the stream)."""
        if self.libvirt:
            data = image(size)
            upload(self.peer, 2, chunks(data, LEGACY_STREAM_PAYLOAD), self.up, self.transfer(),
                   prog=self.prog)  # fmt: skip
            self.written = bytearray(data)

    def expected(self, size: int) -> str:
        if not self.libvirt:
            return synthetic_sha256(size, IMAGE_SEED)
        body = bytes(self.written[:size])
        return hashlib.sha256(body + bytes(size - len(body))).hexdigest()

    def download(self, size: int, section: str, on_data: Any = None) -> None:
        total, sha, _ = download(self.peer, 2, "", self.down, on_data, self.down_args(size),
                                 self.prog)  # fmt: skip
        if total != size or sha != self.expected(size):
            raise Violation(
                f"{section}: received {total} bytes (SHA-256 {sha[:16]}...), expected {size} "
                "bytes of the source"
            )


def _libvirt_fresh_volume(ctx: Context) -> tuple[Peer, Any, Any]:
    """A connection with the storage driver open and a new volume of the run's pool looked
    up on it; skips (with libvirt's reason) when no volume can be made."""
    fixtures = ctx.fixtures
    if fixtures is None:
        raise Skip("no fixtures: run the catalogue through `conformance run` (catalogue.prepared)")
    try:
        name = fixtures.volume()
    except FixtureError as exc:
        raise Skip(str(exc)) from None
    peer, schema = _libvirt_open(ctx, ctx.libvirt.uri)
    pool = _libvirt_call(
        peer,
        LV_POOL_LOOKUP,
        schema["vir_pool_lookup_by_name_args"](name=fixtures.pool),
        "STORAGE_POOL_LOOKUP_BY_NAME",
    ).pool
    vol = _libvirt_call(
        peer,
        LV_VOL_LOOKUP,
        schema["vir_vol_lookup_by_name_args"](pool=pool, name=name),
        "STORAGE_VOL_LOOKUP_BY_NAME",
    ).vol
    return peer, schema, vol


# ============================================================================== §3 framing
def _closes_on(ctx: Context, data: bytes, section: str, shutdown: bool = False) -> None:
    peer = ctx.connect()
    peer.send_raw(data)
    if shutdown:
        peer.shutdown_write()
    peer.expect_close(section)


@case(
    "3.2/1",
    "a header with an unknown message type (7) closes the connection",
    requirement="§3.2: a receiver MUST reject a header whose type is not one of §4.1",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_UNKNOWN_TYPE,),
)
def _unknown_type(ctx: Context) -> None:
    _closes_on(
        ctx, probe_call(ctx, 1)[:16] + (7).to_bytes(4, "big") + probe_call(ctx, 1)[20:], "§3.2"
    )


@case(
    "3.2/2",
    "a header with an unknown status (3) closes the connection",
    requirement="§3.2: a receiver MUST reject a header whose status is not one of §4.2",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_STATUS,),
)
def _unknown_status(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, frame[:24] + (3).to_bytes(4, "big") + frame[28:], "§3.2")


@case(
    "3.3/1",
    "a V2 data frame of 1 MiB (larger than libvirt's 262120) is accepted",
    requirement="§3.3: a receiver MUST accept every frame up to its limit (xdrstream: "
    "XS_PAYLOAD_MAX)",
    expect="upload confirmed (libvirt: and the volume holds the bytes)",
    programs=ANY,
)
def _large_frame(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.upload(chunks(kit.data(3 << 20), 1 << 20), "§3.3")


@case(
    "3.4/1",
    "an undersized length word (27) closes the connection",
    requirement="§3.4: a length below 28 MUST break the connection",
    expect="connection closed, no answer",
    programs=ANY,
)
def _length_27(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, (27).to_bytes(4, "big") + frame[4:], "§3.4")


@case(
    "3.4/2",
    "an oversized length word (2^32-1) closes the connection before the frame is sent",
    requirement="§3.4: the length MUST be checked as soon as its 4 bytes arrive, before "
    "buffering the frame",
    expect="connection closed while the rest of the frame is still unsent",
    programs=ANY,
)
def _length_huge(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, (0xFFFFFFFF).to_bytes(4, "big") + frame[4:], "§3.4")


@case(
    "3.4/3",
    "a length word one above the limit (XS_MESSAGE_MAX + 5) closes the connection",
    requirement="§3.4: a length above the receiver's limit plus 4 is refused without "
    "reading the frame",
    expect="connection closed, no answer",
    programs=ANY,
)
def _length_limit(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, (MAX_FRAME + 5).to_bytes(4, "big") + frame[4:], "§3.4")


@case(
    "3.4/4",
    "no resynchronisation: a valid call after a bad length word is not answered",
    requirement="§3.4: the receiver MUST NOT try to resynchronise",
    expect="connection closed, the following call unanswered",
    programs=ANY,
)
def _no_resync(ctx: Context) -> None:
    _closes_on(ctx, (12).to_bytes(4, "big") + bytes(8) + probe_call(ctx, 2), "§3.4")


@case(
    "3.5/1",
    "end of input inside a frame (truncated call) closes the connection",
    requirement="§3.5: the bytes MUST end at a frame boundary; a truncated frame is a "
    "protocol error",
    expect="connection closed, no answer",
    programs=ANY,
)
def _truncated(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, frame[:-1] if len(frame) > 28 else frame[:20], "§3.5", shutdown=True)


@case(
    "3.5/2",
    "end of input inside a length word closes the connection",
    requirement="§3.5: a truncated last frame is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
)
def _truncated_length(ctx: Context) -> None:
    _closes_on(ctx, b"\0\0", "§3.5", shutdown=True)


# ============================================================================== §4 messages
@case(
    "4.3.2/1",
    "a call whose serial is in use (an open stream's) closes the connection",
    requirement="§4.3.2: a server receiving a call whose serial is in use MUST treat it as "
    "a protocol error",
    expect="connection closed, no answer to the second call",
    programs=ANY,
    deviations=(_libvirtd("answers a call whose serial is an open stream's"),),
)
def _serial_in_use(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(7)
    kit.peer.send_raw(probe_call(ctx, 7))
    kit.peer.expect_close("§4.3.2")


@case(
    "4.3.2/2",
    "a serial is free again once its exchange ended: the same serial twice is answered twice",
    requirement="§4.3.2, §7.1.4: after its end an exchange's serial is free again",
    expect="two replies",
    programs=ANY,
)
def _serial_reuse(ctx: Context) -> None:
    peer = ctx.connect()
    for _ in range(2):
        peer.send_raw(probe_call(ctx, 9))
        wait_frame(peer, 9, [REPLY], "the reply to serial 9")


@case(
    "4.3.3/1",
    "a reply carries its call's serial (arbitrary, non-sequential serials)",
    requirement="§4.3.3: a REPLY carries the serial of the call it answers",
    expect="replies with serials 0xfffffffe and 12345",
    programs=ANY,
)
def _reply_serial(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send_raw(probe_call(ctx, 0xFFFFFFFE) + probe_call(ctx, 12345))
    seen: set[int] = set()
    while len(seen) < 2:
        frame = peer.frame(what="two replies")
        if frame.header.prog == KEEPALIVE_PROGRAM:
            continue
        if frame.header.type != REPLY or frame.header.serial not in (0xFFFFFFFE, 12345):
            raise Violation(f"§4.3.3: unexpected frame {frame.header}")
        seen.add(frame.header.serial)


@case(
    "4.3.4/1",
    "a stream frame whose procedure differs from its exchange's closes the connection",
    requirement="§4.3.4: a frame naming an exchange with another prog/vers/proc is a "
    "protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_DROPS,),
)
def _mismatched_proc(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(STREAM, 3, CONTINUE, image()[:1000], proc=kit.down))
    kit.peer.expect_close("§4.3.4")


@case(
    "4.4.1/1",
    "a plain call gets exactly one reply: PING (void) and ECHO (its argument back)",
    requirement="§4.4.1: the server answers every call with exactly one REPLY",
    expect="REPLY/OK with an empty payload; REPLY/OK echoing the data",
    programs=ANY,
)
def _plain_calls(ctx: Context) -> None:
    if ctx.program == "libvirt":
        _lv_plain_calls(ctx)
        return
    peer = ctx.connect()
    call(peer, PING)
    peer.expect_event(Reply, "the PING reply")
    data = bytes(range(256)) * 17
    call(peer, ECHO, _restore_schema()["xs_echo_args"](data=data))
    reply = peer.expect_event(Reply, "the ECHO reply")
    if bytes(reply.result.data) != data:
        raise Violation("§4.4.1: ECHO returned other data")
    peer.expect_silence(0.2, "§4.4.1: nothing after the single reply")


def _unknown(ctx: Context, prog: int, vers: int, proc: int, section: str) -> None:
    peer = ctx.connect()
    peer.send_raw(raw(proc, CALL, 5, OK, b"", prog=prog, vers=vers))
    expect_error_reply(peer, 5, section)
    alive(peer, ctx, section)


@case(
    "3.6/1",
    "a PING announcing 1 MiB of arguments gets libvirt's decode error and the connection goes on",
    requirement="§3.6: a call larger than its procedure's largest valid argument MUST be "
    "refused from its header with an ERROR reply",
    expect='REPLY/ERROR code 39 "Unable to decode message payload"; later calls answered',
)
def _oversized_call(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send_raw(raw(PING, CALL, 5, OK, bytes(1 << 20)))
    frame = expect_error_reply(peer, 5, "§3.6")
    error = bodies.unpack_error(frame.payload)
    if (error.code, error.domain) != (39, 7):
        raise Violation(f"§3.6: error {error.code}/{error.domain}, expected 39/7 (VIR_ERR_RPC)")
    alive(peer, ctx, "§3.6")


@case(
    "4.4.2/1",
    "a call of an unknown program gets an ERROR reply and the connection continues",
    requirement="§4.4.2, §10.1: an unknown program MUST be answered with an ERROR reply",
    expect="REPLY/ERROR with an error body; later calls answered",
    programs=ANY,
)
def _unknown_program(ctx: Context) -> None:
    _unknown(ctx, 0x1234567, 1, 1, "§4.4.2")


@case(
    "4.4.2/2",
    "a call of an unknown version gets an ERROR reply and the connection continues",
    requirement="§4.4.2: an unknown version MUST be answered with an ERROR reply",
    expect="REPLY/ERROR with an error body; later calls answered",
    programs=ANY,
)
def _unknown_version(ctx: Context) -> None:
    prog = LIBVIRT_PROG if ctx.program == "libvirt" else PROG
    _unknown(ctx, prog, 99, 1, "§4.4.2")


@case(
    "4.4.2/3",
    "a call of an unknown procedure gets an ERROR reply and the connection continues",
    requirement="§4.4.2: an unknown procedure MUST be answered with an ERROR reply",
    expect="REPLY/ERROR with an error body; later calls answered",
    programs=ANY,
)
def _unknown_procedure(ctx: Context) -> None:
    prog = LIBVIRT_PROG if ctx.program == "libvirt" else PROG
    _unknown(ctx, prog, 1, 999999, "§4.4.2")


@case(
    "4.4.2/4",
    "arguments with trailing bytes close the connection",
    requirement="§4.4.2: a body that does not decode as the procedure's type is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_TRAILING, _ours_as_libvirtd("answers a call with trailing bytes")),
)
def _trailing_args(ctx: Context) -> None:
    if ctx.program == "libvirt":
        call = probe_call(ctx, 1, b"\0\0\0\0")
    else:  # an empty ECHO plus 4 bytes: within ECHO's bound, so not refused at its header (§3.6)
        call = raw(ECHO, CALL, 1, OK, b"\0\0\0\0" * 2)
    _closes_on(ctx, call, "§4.4.2")


@case(
    "4.5/1",
    "an error body decodes exactly, with a non-zero code and a level of 1 or 2",
    requirement="§4.5: the error body is virNetMessageError; receivers MUST reject one that "
    "does not decode exactly",
    expect="a decodable error body",
    programs=ANY,
)
def _error_body(ctx: Context) -> None:
    peer = ctx.connect()
    prog = LIBVIRT_PROG if ctx.program == "libvirt" else PROG
    peer.send_raw(raw(999999, CALL, 4, OK, b"", prog=prog))
    frame = expect_error_reply(peer, 4, "§4.5")
    error = bodies.unpack_error(frame.payload)
    if error.level not in (1, 2):
        raise Violation(f"§4.5: error level {error.level} is neither 1 nor 2")


@case(
    "4.6/1",
    "a notification (MESSAGE) from the client gets no reply and the connection continues",
    requirement="§4.6: a MESSAGE gets no reply and belongs to no exchange",
    expect="no answer; later calls answered",
    programs=ANY,
)
def _notification(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send_raw(probe_call(ctx, 0)[:16] + (MESSAGE).to_bytes(4, "big") + probe_call(ctx, 0)[20:])
    peer.expect_silence(0.3, "§4.6: a notification must get no reply")
    alive(peer, ctx, "§4.6")


@case(
    "4.7/1",
    "pipelined calls are all answered",
    requirement="§4.7: a client MAY send new calls while earlier calls are unanswered",
    expect="five replies with the five serials",
    programs=ANY,
)
def _pipelined(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send_raw(b"".join(probe_call(ctx, s) for s in range(20, 25)))
    seen: set[int] = set()
    while len(seen) < 5:
        frame = peer.frame(what="five replies")
        if frame.header.type == REPLY:
            seen.add(frame.header.serial)
    if seen != set(range(20, 25)):
        raise Violation(f"§4.7: replies for serials {sorted(seen)}, expected 20..24")


@case(
    "4.7/2",
    "interleaved streams: a V2 upload and a V2 download on one connection both complete",
    requirement="§4.7: frames of different exchanges MAY be interleaved arbitrarily",
    expect="both streams complete; the download's SHA-256 matches",
    programs=ANY,
)
def _interleaved_streams(ctx: Context) -> None:
    kit = Kit(ctx)
    peer, size = kit.peer, 600_000
    down_args = kit.down_args(size)
    if kit.libvirt:  # download one volume while uploading into another
        kit.prepare(size)
        kit.vol = Kit(ctx).vol
    up = call(peer, kit.up, kit.up_args(), kit.prog)
    peer.expect_event(Reply, "the upload's reply")
    down = call(peer, kit.down, down_args, kit.prog)
    digest, got, pieces = hashlib.sha256(), 0, chunks(image(), 16384)
    confirmed, down_done = False, False
    sending = [StreamData(up, piece) for piece in pieces] + [StreamFinish(up)]
    while not (confirmed and down_done):
        if sending:  # read what is there between writes: the download flows meanwhile
            peer.send(sending.pop(0))
            try:
                event = peer.event(0.01 if sending else None, "events of both streams")
            except Silence:
                continue
        else:
            event = peer.event(what="events of both streams")
        if isinstance(event, Reply) and event.serial == down:
            continue
        if isinstance(event, StreamData) and event.serial == down:
            digest.update(event.data)
            got += len(event.data)
        elif isinstance(event, StreamEnd) and event.serial == down:
            peer.send(StreamFinish(down))
        elif isinstance(event, StreamConfirm):
            if event.serial == up:
                confirmed = True
            else:
                down_done = True
        else:
            raise Violation(f"§4.7: unexpected {event!r}"[:300])
    if got != size or digest.hexdigest() != kit.expected(size):
        raise Violation(f"§4.7: the interleaved download delivered {got} wrong bytes")


@case(
    "4.7/3",
    "calls during an open stream are answered and the stream completes",
    requirement="§4.7: a client MAY send new calls while streams are open",
    expect="PING replies during a V2 upload; upload confirmed",
    programs=ANY,
)
def _calls_during_stream(ctx: Context) -> None:
    kit = Kit(ctx)

    def ping(peer: Peer, index: int) -> None:
        if index == 1:
            kit.ping()

    kit.upload(chunks(kit.data()), "§4.7", between=ping)


@case(
    "4.8/1",
    "CALL_WITH_FDS is a protocol error",
    requirement="§4.8: a receiver MUST treat descriptor passing as a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
)
def _with_fds(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, frame[:16] + int(MessageType.CALL_WITH_FDS).to_bytes(4, "big") + frame[20:],
               "§4.8")  # fmt: skip


# ============================================================================== §5 keepalive
@case(
    "5/1",
    "a keepalive PING is answered with a PONG",
    requirement="§5: an endpoint that receives a PING SHOULD answer with a PONG promptly",
    expect="MESSAGE PONG, serial 0",
    programs=ANY,
    level="SHOULD",
)
def _ping_pong(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send(KeepalivePing())
    while True:
        frame = peer.frame(what="a keepalive PONG")
        if frame.header.prog == KEEPALIVE_PROGRAM and frame.header.proc == 2:
            if frame.header.serial != 0 or frame.payload:
                raise Violation("§5: a PONG has serial 0 and an empty payload")
            return


@case(
    "5/2",
    "a keepalive PING with a payload closes the connection",
    requirement="§5: a non-empty keepalive payload is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_KEEPALIVE,),
)
def _bad_keepalive(ctx: Context) -> None:
    frame = raw(
        KEEPALIVE_PING, MESSAGE, 0, OK, b"\0\0\0\1", prog=KEEPALIVE_PROGRAM, vers=KEEPALIVE_VERSION
    )
    _closes_on(ctx, frame, "§5")


@case(
    "5/3",
    "keepalive during a long download: the PONG comes between data frames",
    requirement="§5 with §4.7: keepalive MAY be sent at any time and SHOULD be answered "
    "promptly, also while a stream flows",
    expect="a PONG before the end of data; download complete",
    level="SHOULD",
    programs=ANY,
)
def _keepalive_in_stream(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    state = {"sent": False, "pong": False}
    original = peer.event

    def event(timeout: float | None = None, what: str = "an event") -> Any:
        got = original(timeout, what)
        if isinstance(got, KeepalivePong):
            state["pong"] = True
            return original(timeout, what)
        return got

    def on_data(peer: Peer, total: int) -> None:
        if not state["sent"] and total >= 1 << 20:
            state["sent"] = True
            peer.send(KeepalivePing())

    peer.event = event  # type: ignore[method-assign]
    kit.download(8 << 20, "§5: the download around the keepalive", on_data)
    if not state["pong"]:
        raise Violation("§5: no PONG arrived while the stream was flowing")


# ============================================================================== §6, §7.1
@case(
    "6.4/1",
    "the declaration is honoured: a dense V2 procedure (RESTORE_DENSE) uploads without holes",
    requirement="§6.4: both endpoints MUST use the same declaration for a procedure",
    expect="upload confirmed",
)
def _dense(ctx: Context) -> None:
    check_upload(ctx.connect(), 2, chunks(image()), "§6.4", proc=RESTORE_DENSE)


@case(
    "7.1.1/1",
    "a stream frame for a serial with no open stream closes the connection (wrong serial)",
    requirement="§7.1.1: a frame that names no open stream is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_DROPS,),
)
def _unknown_stream(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(STREAM, 4, CONTINUE, image()[:1000]))
    kit.peer.expect_close("§7.1.1")


@case(
    "7.1.2/1",
    "re-chunking: an upload in odd chunk sizes (1, 7, 4093 ... bytes) is accepted whole",
    requirement="§7.1.2: chunk boundaries carry no meaning; the receiver MUST deliver the "
    "bytes in order",
    expect="upload confirmed (the endpoint accepts only the exact stream)",
    programs=ANY,
)
def _rechunk(ctx: Context) -> None:
    data, out, at = image(), [], 0
    for size in [1, 7, 4093, 1, 65536, 3] * 100:
        if at >= len(data):
            break
        out.append(data[at : at + size])
        at += size
    out += chunks(data[at:])
    Kit(ctx).upload(out, "§7.1.2")


@case(
    "7.1.2/2",
    "a download larger than one frame arrives complete and in order (SHA-256)",
    requirement="§7.1.2: the receiver gets the bytes in order",
    expect="3 MiB with the endpoint's SHA-256",
    programs=ANY,
)
def _download_order(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.prepare(3 << 20)
    kit.download(3 << 20, "§7.1.2")


@case(
    "7.1.2/3",
    "an empty data chunk from the client (empty STREAM/CONTINUE in an upload) is refused",
    requirement="§7.1.2, §7.3.1: chunks have at least one byte; a client never sends an "
    "empty STREAM/CONTINUE",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_EMPTY,),
)
def _empty_chunk(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(STREAM, 3, CONTINUE))
    kit.peer.expect_close("§7.1.2")


@case(
    "7.1.3/1",
    "a hole in a sparse upload is accepted as zeros",
    requirement="§7.1.3: in a @sparse stream the data sender MAY send a hole",
    expect="upload confirmed, stored length counts the hole",
    programs=ANY,
)
def _hole_ok(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.upload(with_hole(kit.data(), 100_000, 50_000), "§7.1.3")


def _bad_hole(ctx: Context, sparse: bool, body: bytes, section: str) -> None:
    kit = Kit(ctx)
    proc = kit.open_raw(3, sparse)
    kit.peer.send_raw(kit.raw(HOLE, 3, CONTINUE, body, proc))
    kit.peer.expect_close(section)


@case(
    "7.1.3/2",
    "a hole in a stream not declared @sparse closes the connection",
    requirement="§7.1.3: a hole in a stream not declared @sparse is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
)
def _hole_dense(ctx: Context) -> None:
    _bad_hole(ctx, False, bodies.pack_hole(4096, 0), "§7.1.3")


@case(
    "7.1.3/3",
    "a hole with non-zero flags closes the connection",
    requirement="§7.1.3: a hole with non-zero flags is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_BAD_HOLE,),
)
def _hole_flags(ctx: Context) -> None:
    _bad_hole(ctx, True, bodies.pack_hole(4096, 1), "§7.1.3")


@case(
    "7.1.3/4",
    "a hole with a negative length closes the connection",
    requirement="§7.1.3: a negative hole length is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_BAD_HOLE,),
)
def _hole_negative(ctx: Context) -> None:
    body = (-4096).to_bytes(8, "big", signed=True) + bytes(4)
    _bad_hole(ctx, True, body, "§7.1.3")


@case(
    "7.1.4/1",
    "server failure before the stream opens: a bad argument gets an ERROR reply (no stream)",
    requirement="§7.1.4, §7.3.1: an ERROR reply to the primary call means no stream",
    expect="REPLY/ERROR; later calls answered",
    programs=ANY,
)
def _refused_before_open(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.peer.send_raw(kit.raw(CALL, 3, OK, kit.packed(kit.up, kit.bad_up_args())))
    expect_error_reply(kit.peer, 3, "§7.1.4")
    alive(kit.peer, ctx, "§7.1.4")


# ============================================================================== §7.2 V1
@case(
    "7.2.1/1",
    "V1: the server answers pipelined stream calls in the order received",
    requirement="§7.2.1: the server MUST answer the V1 stream calls of one stream in order",
    expect="eight acknowledgements in serial order",
)
def _v1_order(ctx: Context) -> None:
    peer = ctx.connect()
    open_raw(peer, RESTORE_PROC[1], 1, pack_args(RESTORE_PROC[1], restore_args()))
    data = image()
    frames = b""
    for index, piece in enumerate(chunks(data, 25_000)[:8]):
        body = bodies.v1_data_prefix(1, len(piece)) + piece + bodies.pad(len(piece))
        frames += raw(RESTORE_PROC[1], CALL, 10 + index, CONTINUE, body)
    peer.send_raw(frames)
    for index in range(8):
        frame = wait_frame(peer, 10 + index, [REPLY], f"the acknowledgement of call {10 + index}")
        if frame.header.status != OK:
            raise Violation(f"§7.2.1: call {10 + index} failed: {_error_text(frame)}")
        later = [f.header.serial for f in peer.received if f.header.serial > 10 + index]
        if later:
            raise Violation(f"§7.2.1: serial {later[0]} was answered before {10 + index}")


@case(
    "7.2.1/2",
    "a STREAM frame for a V1 stream closes the connection",
    requirement="§7.2.1: V1 streams use no STREAM frames; receiving one is a protocol error",
    expect="connection closed, no answer",
)
def _v1_stream_frame(ctx: Context) -> None:
    peer = ctx.connect()
    open_raw(peer, RESTORE_PROC[1], 1, pack_args(RESTORE_PROC[1], restore_args()))
    peer.send_raw(raw(RESTORE_PROC[1], STREAM, 1, CONTINUE, image()[:100]))
    peer.expect_close("§7.2.1")


@case(
    "7.2.2/1",
    "V1 upload with a hole: data calls acknowledged, FINISH confirmed",
    requirement="§7.2.2: every chunk is acknowledged; FINISH is confirmed after commit",
    expect="StreamAck per chunk, StreamConfirm",
)
def _v1_upload(ctx: Context) -> None:
    check_upload(ctx.connect(), 1, with_hole(image(), 100_000, 50_000), "§7.2.2")


@case(
    "7.2.3/1",
    "V1 download with pipelined READs: data, end of data, FINISH confirmed",
    requirement="§7.2.3: data only in answer to READ; the end of data cancels later READs",
    expect="the endpoint's bytes (SHA-256), StreamEnd, StreamConfirm",
)
def _v1_download(ctx: Context) -> None:
    check_download(ctx.connect(), 1, 1 << 20, "§7.2.3")


@case(
    "7.2.4/1",
    "a ninth outstanding V1 stream call closes the connection",
    requirement="§7.2.4: a call beyond the window of 8 MUST be treated as a protocol error",
    expect="connection closed",
)
def _v1_window(ctx: Context) -> None:
    peer = ctx.connect()
    open_raw(peer, RESTORE_PROC[1], 1, pack_args(RESTORE_PROC[1], restore_args()))
    frames = b"".join(
        raw(
            RESTORE_PROC[1],
            CALL,
            10 + i,
            CONTINUE,
            bodies.v1_data_prefix(1, 1) + b"Q" + bodies.pad(1),
        )
        for i in range(9)
    )
    peer.send_raw(frames)
    while True:  # acknowledgements of the first calls may come; the 9th must end it all
        try:
            frame = peer.frame(what="the connection to close after the 9th call")
        except Closed:
            return
        if frame.header.serial == 18:
            raise Violation("§7.2.4: the ninth outstanding call was answered")


@case(
    "7.2.5/1",
    "V1 client abort: the ABORT call is confirmed and the connection continues",
    requirement="§7.2.5: the server answers ABORT with an OK reply (or ERROR)",
    expect="REPLY to the ABORT call; later calls answered",
)
def _v1_abort(ctx: Context) -> None:
    peer = ctx.connect()
    serial = call(peer, RESTORE_PROC[1], restore_args())
    peer.expect_event(Reply, "the primary reply")
    peer.send(StreamData(serial, image()[:50_000]))
    peer.send(StreamAbort(serial))
    wait_for(peer, (StreamConfirm, StreamError), "the abort's confirmation")
    alive(peer, ctx, "§7.2.5")


@case(
    "7.2.5/2",
    "V1 server failure: a rejected stream fails a stream call; later calls are dropped",
    requirement="§7.2.5, §10.2: the server fails the oldest call, drops the stream's late calls",
    expect="REPLY/ERROR to a stream call; no reply to later calls; connection continues",
)
def _v1_failure(ctx: Context) -> None:
    peer = ctx.connect()
    open_raw(peer, RESTORE_PROC[1], 1, pack_args(RESTORE_PROC[1], restore_args()))
    junk = b"not a migration stream" * 100
    body = bodies.v1_data_prefix(1, len(junk)) + junk + bodies.pad(len(junk))
    peer.send_raw(raw(RESTORE_PROC[1], CALL, 2, CONTINUE, body))
    finish = raw(RESTORE_PROC[1], CALL, 3, CONTINUE, bodies.pack_v1_call(1, bodies.V1Op.FINISH))
    peer.send_raw(finish)
    frame = wait_frame(peer, 2, [REPLY], "the reply to the data call")
    if frame.header.status == OK:
        frame = wait_frame(peer, 3, [REPLY], "the reply to FINISH")
    if frame.header.status != ERROR:
        raise Violation("§7.2.5: the rejected stream was confirmed")
    alive(peer, ctx, "§7.2.5")


# ============================================================================== §7.3 V2
@case(
    "7.3.1/1",
    "V2 upload: reply, data, finish, confirmation",
    requirement="§7.3.1: the server confirms StreamFinish with an empty STREAM/OK once committed",
    expect="REPLY/OK, STREAM/OK",
    programs=ANY,
)
def _v2_upload(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.upload(chunks(kit.data()), "§7.3.1")


@case(
    "7.3.1/2",
    "stream data before the primary reply closes the connection",
    requirement="§7.3.1: the client MUST NOT send stream frames before the successful reply",
    expect="connection closed (no stream is open yet); or, from a server that answered the "
    "call before it read the data (one write carries both), REPLY/OK and the stream goes on",
    programs=ANY,
)
def _v2_data_early(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    peer.send_raw(
        kit.raw(CALL, 3, OK, kit.packed(kit.up, kit.up_args()))
        + kit.raw(STREAM, 3, CONTINUE, image()[:1000])
    )
    try:
        frame = peer.frame(what="the close, or the reply to the call")
    except Closed:
        return
    if frame.header.type != REPLY or frame.header.serial != 3 or frame.header.status != OK:
        raise Violation(f"§7.3.1: expected the close (or REPLY/OK to the call), got {frame.header}")
    # the call was answered before the data was read: the data is in the stream now
    peer.send_raw(kit.raw(STREAM, 3, ERROR))
    wait_frame(peer, 3, [STREAM], "the confirmation of the client's abort")
    alive(peer, ctx, "§7.3.1")


@case(
    "7.3.1/3",
    "stream data after StreamFinish closes the connection",
    requirement="§9.3: data is not allowed in FINISHING; a missing table pair is a protocol error",
    expect="connection closed; the finish (sent before the data) may be answered first",
    programs=ANY,
    deviations=(_LV_DROPS,),
)
def _v2_data_after_finish(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    data = kit.data()
    kit.peer.send_raw(
        kit.raw(STREAM, 3, CONTINUE, data)
        + kit.raw(STREAM, 3, OK)
        + kit.raw(STREAM, 3, CONTINUE, data[:100])
    )
    # the finish came before the offending data: its confirmation (or failure) may come
    kit.peer.expect_close("§9.3", answers=[(3, [STREAM])])


@case(
    "7.3.1/4",
    "StreamFinish twice closes the connection",
    requirement="§9.3: a second finish in FINISHING is a protocol error",
    expect="connection closed; the first finish may be answered first",
    programs=ANY,
    deviations=(_LV_DROPS,),
)
def _v2_finish_twice(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(
        kit.raw(STREAM, 3, CONTINUE, kit.data()) + kit.raw(STREAM, 3, OK) + kit.raw(STREAM, 3, OK)
    )
    kit.peer.expect_close("§9.3", answers=[(3, [STREAM])])  # the first finish may be answered


@case(
    "7.3.1/5",
    "the server rejects a stream its endpoint refuses: finish answered with STREAM/ERROR",
    requirement="§7.3.1: the server answers StreamFinish with STREAM/ERROR if committing failed",
    expect="STREAM/ERROR with an error body; connection continues",
    programs=ANY,
)
def _v2_rejected(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    serial = call(peer, kit.up, kit.refused_up_args(), kit.prog)
    peer.expect_event(Reply, "the primary reply")
    peer.send(StreamData(serial, image()[:150_000]))  # restore: cut; libvirt: too long
    peer.send(StreamFinish(serial))
    event = peer.expect_event((StreamError, StreamConfirm), "the answer to StreamFinish")
    if isinstance(event, StreamConfirm):
        raise Violation("§7.3.1: a truncated stream was confirmed as committed")
    alive(peer, ctx, "§7.3.1")


@case(
    "7.3.2/1",
    "V2 download: reply, data, empty STREAM/CONTINUE at the end, finish confirmed",
    requirement="§7.3.2: the end of data is an empty STREAM/CONTINUE; the server confirms "
    "StreamFinish",
    expect="the endpoint's bytes (SHA-256), StreamEnd, StreamConfirm",
    programs=ANY,
)
def _v2_download(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.prepare(1 << 20)
    kit.download(1 << 20, "§7.3.2")


@case(
    "7.3.3/1",
    "V2 upload abort: the server confirms and the connection continues",
    requirement="§7.3.3: the server stops and confirms an abort with STREAM/OK (or STREAM/ERROR)",
    expect="STREAM/OK or STREAM/ERROR; later calls answered",
    programs=ANY,
)
def _v2_abort_upload(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    serial = call(peer, kit.up, kit.up_args(), kit.prog)
    peer.expect_event(Reply, "the primary reply")
    peer.send(StreamData(serial, image()[:50_000]))
    peer.send(StreamAbort(serial))
    peer.expect_event((StreamConfirm, StreamError), "the abort's confirmation")
    alive(peer, ctx, "§7.3.3")


@case(
    "7.3.3/2",
    "stream data after a client abort closes the connection",
    requirement="§9.3: data is not allowed in ABORTED; a missing table pair is a protocol error",
    expect="connection closed",
    programs=ANY,
    deviations=(_LV_DROPS,),
)
def _v2_data_after_abort(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    kit.open_raw(3)
    peer.send_raw(kit.raw(STREAM, 3, ERROR) + kit.raw(STREAM, 3, CONTINUE, b"x"))
    while True:  # the abort's confirmation may come first; then the close
        try:
            frame = peer.frame(what="the connection to close")
        except Closed:
            return
        if frame.header.type != STREAM or frame.header.status not in (OK, ERROR):
            raise Violation(f"§9.3: unexpected answer {frame.header}")


@case(
    "7.3.3/3",
    "V2 download abort mid-stream: confirmed, late data dropped, connection continues",
    requirement="§7.3.3: the client MAY abort a download at any time before StreamFinish",
    expect="STREAM/OK (or STREAM/ERROR); later calls answered",
    programs=ANY,
)
def _v2_abort_download(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    serial = call(peer, kit.down, kit.down_args(16 << 20), kit.prog)
    peer.expect_event(Reply, "the primary reply")
    peer.expect_event(StreamData, "some data")
    peer.send(StreamAbort(serial))
    wait_for(peer, (StreamConfirm, StreamError), "the abort's confirmation")
    alive(peer, ctx, "§7.3.3")


@case(
    "7.3.3/4",
    "a client abort with a payload closes the connection",
    requirement="§7.3.3: a client abort with a non-empty payload is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_ABORT_BODY,),
)
def _v2_abort_payload(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(STREAM, 3, ERROR, b"\0\0\0\1"))
    kit.peer.expect_close("§7.3.3")


@case(
    "7.3.3/5",
    "V2 server failure mid-upload: STREAM/ERROR, late frames dropped, serial reusable",
    requirement="§7.3.3, §10.2: after STREAM/ERROR the server drops the stream's late frames",
    expect="STREAM/ERROR; late data and finish ignored; later calls answered",
    programs=ANY,
)
def _v2_failure(ctx: Context) -> None:
    kit = Kit(ctx)
    peer = kit.peer
    proc = kit.up
    open_raw(peer, proc, 3, kit.packed(proc, kit.refused_up_args(100)), kit.prog)
    junk = kit.raw(STREAM, 3, CONTINUE, b"not a migration stream" * 50)
    deadline = time.monotonic() + peer.timeout
    while True:  # the server learns of the rejection when it next writes to its endpoint
        peer.send_raw(junk)
        try:
            frame = peer.frame(0.05, "STREAM/ERROR for the rejected stream")
        except Silence:
            if time.monotonic() > deadline:
                raise Violation(
                    "§7.3.3: no STREAM/ERROR for a stream the endpoint rejected"
                ) from None
            continue
        except Closed:
            raise Violation("§7.3.3: the connection closed instead of STREAM/ERROR") from None
        if frame.header.serial == 3:
            break
    if frame.header.status != ERROR or not frame.payload:
        raise Violation(f"§7.3.3: expected STREAM/ERROR with a body, got {frame.header}")
    peer.send_raw(kit.raw(STREAM, 3, CONTINUE, b"late") + kit.raw(STREAM, 3, OK))
    alive(peer, ctx, "§10.2")
    peer.send_raw(probe_call(ctx, 3))
    wait_frame(peer, 3, [REPLY], "the reply to a new call reusing the failed serial")


@case(
    "7.3.4/1",
    "V2 sparse upload: a large STREAM_HOLE in the data direction is accepted",
    requirement="§7.3.4: holes are STREAM_HOLE/CONTINUE {length, 0} in the data direction",
    expect="upload confirmed (data and hole add up to the endpoint's stream)",
    programs=ANY,
)
def _v2_hole_roundtrip(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.upload(with_hole(kit.data(), 20_000, 150_000), "§7.3.4")


# ============================================================================== §7.4 V3
@case(
    "7.4.1/1",
    "V3 upload: data right after the call, finish, then the reply",
    requirement="§7.4.1: the client MAY send data immediately after the call",
    expect="REPLY/OK after StreamFinish with the stored length",
)
def _v3_upload(ctx: Context) -> None:
    check_upload(ctx.connect(), 3, with_hole(image(), 100_000, 50_000), "§7.4.1")


@case(
    "7.4.1/2",
    "V3 upload: no successful reply before StreamFinish (1 s pause before finishing)",
    requirement="§7.4.1: the server MUST NOT send a successful reply before StreamFinish",
    expect="silence until the finish, then REPLY/OK",
)
def _v3_no_early_reply(ctx: Context) -> None:
    peer = ctx.connect()
    serial = call(peer, RESTORE_PROC[3], restore_args())
    for piece in chunks(image()):
        peer.send(StreamData(serial, piece))
    peer.expect_silence(1.0, "§7.4.1: the server replied before StreamFinish")
    peer.send(StreamFinish(serial))
    peer.expect_event(Reply, "the reply after StreamFinish")


@case(
    "7.4.2/1",
    "V3 download: data, empty STREAM/CONTINUE, then the reply",
    requirement="§7.4.2: end of data as in V2; the reply ends the exchange",
    expect="the endpoint's bytes (SHA-256), StreamEnd, REPLY/OK",
)
def _v3_download(ctx: Context) -> None:
    check_download(ctx.connect(), 3, 1 << 20, "§7.4.2")


@case(
    "7.4.3/1",
    "V3 early error: an ERROR reply while data flows; late frames dropped",
    requirement="§7.4.3: after an early ERROR reply the server MUST drop the stream's frames "
    "that still arrive",
    expect="REPLY/ERROR; late data and finish ignored; a call reusing the serial answered",
)
def _v3_early_error(ctx: Context) -> None:
    peer = ctx.connect()
    data = image()
    peer.send_raw(
        raw(RESTORE_PROC[3], CALL, 3, OK, pack_args(RESTORE_PROC[3], restore_args(flags=1)))
    )
    expect_error_reply(peer, 3, "§7.4.3")
    peer.send_raw(
        raw(RESTORE_PROC[3], STREAM, 3, CONTINUE, data[:30_000])
        + raw(RESTORE_PROC[3], STREAM, 3, OK)
    )
    alive(peer, ctx, "§7.4.3")
    peer.send_raw(raw(PING, CALL, 3))
    wait_frame(peer, 3, [REPLY], "the reply to a new call reusing the DRAINING serial")


@case(
    "7.4.3/2",
    "V3 upload abort: the server stops and sends the primary reply",
    requirement="§7.4.3: the server stops, drops late frames and sends the primary REPLY",
    expect="REPLY (ERROR expected, OK allowed); later calls answered",
)
def _v3_abort_upload(ctx: Context) -> None:
    peer = ctx.connect()
    serial = call(peer, RESTORE_PROC[3], restore_args())
    peer.send(StreamData(serial, image()[:50_000]))
    peer.send(StreamAbort(serial))
    peer.expect_event((Reply, ErrorReply), "the primary reply after the abort")
    alive(peer, ctx, "§7.4.3")


@case(
    "7.4.3/3",
    "V3 download abort: the server stops and sends the primary reply",
    requirement="§7.4.3: the client drops data in flight; the server replies",
    expect="REPLY (ERROR expected); later calls answered",
)
def _v3_abort_download(ctx: Context) -> None:
    peer = ctx.connect()
    serial = call(peer, SAVE_PROC[3], save_args(f"{16 << 20}:1"))
    peer.expect_event(StreamData, "some data")
    peer.send(StreamAbort(serial))
    wait_for(peer, (Reply, ErrorReply), "the primary reply after the abort")
    alive(peer, ctx, "§7.4.3")


@case(
    "7.4.3/4",
    "V3 upload of a stream the endpoint refuses ends with an ERROR reply",
    requirement="§7.4: the reply reports the outcome of the whole operation, data included",
    expect="REPLY/ERROR after StreamFinish",
)
def _v3_rejected(ctx: Context) -> None:
    peer = ctx.connect()
    serial = call(peer, RESTORE_PROC[3], restore_args())
    peer.send(StreamData(serial, image()[:150_000]))
    peer.send(StreamFinish(serial))
    peer.expect_event(ErrorReply, "an ERROR reply for the truncated stream")
    alive(peer, ctx, "§7.4")


# ============================================================================== §8, §10
@case(
    "8.2/1",
    "a client that stops reading a download: the server stays responsive, nothing is lost",
    requirement="§8.2, §8.3: flow control holds the sender back without losing data; other "
    "connections are served meanwhile",
    expect="a PING on a second connection answered during the stall; download complete",
    programs=ANY,
)
def _stop_reading(ctx: Context) -> None:
    kit = Kit(ctx)
    size = 48 << 20
    stalled = {"done": False}

    def on_data(peer: Peer, total: int) -> None:
        if not stalled["done"] and total >= 1 << 20:
            stalled["done"] = True
            time.sleep(1.0)
            other = ctx.connect()
            alive(other, ctx, "§8.2")

    kit.download(size, "§8.2: after the stall", on_data)


@case(
    "10.1/1",
    "after a protocol error nothing more is processed: a call behind a bad frame is not answered",
    requirement="§10.1: the endpoint MUST stop processing the input and MUST close",
    expect="connection closed, the following call unanswered",
    programs=ANY,
    deviations=(_LV_UNKNOWN_TYPE,),
)
def _stop_processing(ctx: Context) -> None:
    bad = probe_call(ctx, 1)
    bad = bad[:16] + (9).to_bytes(4, "big") + bad[20:]
    _closes_on(ctx, bad + probe_call(ctx, 2), "§10.1")


@case(
    "10.1/2",
    "the exchanges in progress end with the connection: a protocol error during a stream",
    requirement="§10.1: all exchanges on the connection end; the offending frame is not answered",
    expect="connection closed, no confirmation for the open stream",
    programs=ANY,
    deviations=(_LV_UNKNOWN_TYPE,),
)
def _error_in_stream(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(9, 3, CONTINUE, b"x"))
    kit.peer.expect_close("§10.1")


@case(
    "10.2/1",
    "DRAINING: 20 failed V3 uploads with late frames each; all late frames dropped",
    requirement="§10.2: a server MUST remember at least the 16 most recent DRAINING serials",
    expect="an ERROR reply each; late frames ignored; connection continues",
)
def _draining_many(ctx: Context) -> None:
    peer = ctx.connect()
    first = b"".join(
        raw(RESTORE_PROC[3], CALL, 100 + i, OK, pack_args(RESTORE_PROC[3], restore_args(flags=1)))
        for i in range(20)
    )
    peer.send_raw(first)
    for i in range(20):
        expect_error_reply(peer, 100 + i, "§10.2")
    late = b"".join(raw(RESTORE_PROC[3], STREAM, 100 + i, CONTINUE, b"late") for i in range(4, 20))
    peer.send_raw(late)
    alive(peer, ctx, "§10.2")


@case(
    "10.3/1",
    "a whole session of every variant on one connection, judged frame by frame",
    requirement="§10.3: an implementation MUST NOT send what this specification forbids",
    expect="every frame the server sends is allowed by §9's tables",
    programs=ANY,
)
def _mixed_session(ctx: Context) -> None:
    if ctx.program == "libvirt":  # libvirt's streams are all V2
        kit = Kit(ctx)
        for size in (300_000, 1 << 20):
            kit.upload(chunks(kit.data(size)), "§10.3")
            kit.download(size, "§10.3")
        return
    peer = ctx.connect()
    for variant in (1, 2, 3):
        check_upload(peer, variant, chunks(image()), "§10.3")
        check_download(peer, variant, 300_000, "§10.3")


# ============================================================================== libvirt (V2)
def _libvirt_call(peer: Peer, proc: int, args: Any, what: str) -> Any:
    call(peer, proc, args, LIBVIRT_PROG, 1)
    reply = peer.expect_event((Reply, ErrorReply), what)
    if isinstance(reply, ErrorReply):
        raise Skip(f"libvirt refused {what}: {reply.error.message}")
    return reply.result


def _libvirt_open(ctx: Context, uri: str) -> tuple[Peer, Any]:
    peer = ctx.connect()
    schema = schemas.load("libvirt_remote")
    _libvirt_call(
        peer,
        LV_OPEN,
        schema["vir_connect_open_args"](name=uri, flags=0),
        "CONNECT_OPEN",
    )
    return peer, schema


def _libvirt_volume(ctx: Context) -> tuple[Peer, Any, Any]:
    if ctx.libvirt.pool is None or ctx.libvirt.volume is None:
        raise Skip(
            "the suite could make no volume of its own, and no --libvirt-pool and "
            "--libvirt-volume (a raw volume of 2 MiB the cases may overwrite) were given"
        )
    peer, schema = _libvirt_open(ctx, ctx.libvirt.uri)
    pool = _libvirt_call(
        peer,
        LV_POOL_LOOKUP,
        schema["vir_pool_lookup_by_name_args"](name=ctx.libvirt.pool),
        "STORAGE_POOL_LOOKUP_BY_NAME",
    ).pool
    vol = _libvirt_call(
        peer,
        LV_VOL_LOOKUP,
        schema["vir_vol_lookup_by_name_args"](pool=pool, name=ctx.libvirt.volume),
        "STORAGE_VOL_LOOKUP_BY_NAME",
    ).vol
    return peer, schema, vol


def _libvirt_screenshot(ctx: Context) -> tuple[Peer, Any]:
    """A connection to the test domain's driver and the arguments of its screenshot."""
    peer, schema, dom = _libvirt_domain(ctx)
    return peer, schema["vir_domain_screenshot_args"](dom=dom, screen=0, flags=0)


def _libvirt_domain(ctx: Context) -> tuple[Peer, Any, Any]:
    """A connection to the domain driver and the suite's own domain looked up on it (the
    given ``--libvirt-domain`` when the suite could make none)."""
    name = ctx.libvirt.domain
    if ctx.fixtures is not None and ctx.fixtures.domain_name is not None:
        name = ctx.fixtures.domain_name
    peer, schema = _libvirt_open(ctx, ctx.libvirt.domain_uri)
    dom = _libvirt_call(
        peer,
        LV_DOMAIN_LOOKUP,
        schema["vir_domain_lookup_by_name_args"](name=name),
        "DOMAIN_LOOKUP_BY_NAME",
    ).dom
    return peer, schema, dom


def _libvirt_download(peer: Peer, proc: int, args: Any) -> tuple[bytes, int]:
    serial = call(peer, proc, args, LIBVIRT_PROG, 1)
    reply = peer.expect_event((Reply, ErrorReply), "the primary reply")
    if isinstance(reply, ErrorReply):
        raise Violation(f"libvirt refused the download: {reply.error.message}")
    data, holes = bytearray(), 0
    while True:
        event = peer.event(what="download data")
        if isinstance(event, StreamData):
            data += event.data
        elif isinstance(event, StreamHole):
            data += bytes(event.length)
            holes += 1
        elif isinstance(event, StreamEnd):
            break
        else:
            raise Violation(f"unexpected {event!r}"[:300])
    peer.send(StreamFinish(serial))
    peer.expect_event(StreamConfirm, "the confirmation of StreamFinish")
    return bytes(data), holes


@case(
    "7.3.2/2",
    "libvirt: a V2 screenshot download (test driver) ends with an empty STREAM/CONTINUE",
    requirement="§7.3.2: the V2 download sequence of libvirt's DOMAIN_SCREENSHOT",
    expect="REPLY/OK, data, StreamEnd, StreamConfirm; a non-empty image",
    programs=LIBVIRT,
)
def _lv_screenshot(ctx: Context) -> None:
    peer, args = _libvirt_screenshot(ctx)
    data, _ = _libvirt_download(peer, LV_SCREENSHOT, args)
    if not data:
        raise Violation("§7.3.2: the screenshot stream was empty")


@case(
    "7.3.1/6",
    "libvirt: V2 volume upload then download round-trips with equal SHA-256",
    requirement="§7.3.1, §7.3.2: libvirt's STORAGE_VOL_UPLOAD/DOWNLOAD sequences",
    expect="upload confirmed; the download returns the same bytes",
    programs=LIBVIRT,
)
def _lv_roundtrip(ctx: Context) -> None:
    try:
        peer, schema, vol = _libvirt_fresh_volume(ctx)
    except Skip:  # no volume of the suite's own: the given one (the range it may overwrite)
        peer, schema, vol = _libvirt_volume(ctx)
    data = image(300_000, 3)
    args = schema["vir_vol_transfer_args"](vol=vol, offset=_DENSE_AT, length=len(data), flags=0)
    serial = call(peer, LV_UPLOAD, args, LIBVIRT_PROG, 1)
    peer.expect_event(Reply, "the upload's reply")
    for piece in chunks(data, LEGACY_STREAM_PAYLOAD):
        peer.send(StreamData(serial, piece))
    peer.send(StreamFinish(serial))
    peer.expect_event(StreamConfirm, "the upload's confirmation")
    got, _ = _libvirt_download(
        peer,
        LV_DOWNLOAD,
        schema["vir_vol_transfer_args"](vol=vol, offset=_DENSE_AT, length=len(data), flags=0),
    )
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        raise Violation(f"§7.3: downloaded {len(got)} bytes differ from the {len(data)} uploaded")


@case(
    "7.3.4/2",
    "libvirt: sparse upload and sparse download carry holes as STREAM_HOLE",
    requirement="§7.3.4: holes are STREAM_HOLE/CONTINUE frames with the sparse flags",
    expect="the downloaded image equals the uploaded one; holes arrive as holes",
    programs=LIBVIRT,
)
def _lv_sparse(ctx: Context) -> None:
    # libvirt seeks over an uploaded hole (what was there stays) and a download sends holes
    # only where the file has them: a volume the suite made with allocation 0, never a given
    # one (it may be preallocated: then there is no hole to send)
    peer, schema, vol = _libvirt_fresh_volume(ctx)
    size, data_len = 1 << 20, 64 << 10
    payload = image(200_000, 4)[:data_len]
    args = schema["vir_vol_transfer_args"](vol=vol, offset=0, length=0, flags=1)
    serial = call(peer, LV_UPLOAD, args, LIBVIRT_PROG, 1)
    peer.expect_event(Reply, "the upload's reply")
    peer.send(StreamData(serial, payload))
    peer.send(StreamHole(serial, size - data_len))
    peer.send(StreamFinish(serial))
    peer.expect_event(StreamConfirm, "the upload's confirmation")
    got, holes = _libvirt_download(
        peer, LV_DOWNLOAD, schema["vir_vol_transfer_args"](vol=vol, offset=0, length=size, flags=1)
    )
    expected = payload + bytes(size - data_len)
    if got[:size] != expected:
        raise Violation(f"§7.3.4: the sparse round trip changed the data ({len(got)} bytes)")
    if holes == 0:
        raise Violation("§7.3.4: the sparse download sent no STREAM_HOLE")


@case(
    "7.3.3/6",
    "libvirt: aborting a screenshot download is confirmed and the connection continues",
    requirement="§7.3.3: the client MAY abort a download before StreamFinish",
    expect="STREAM/OK or STREAM/ERROR; later calls answered",
    programs=LIBVIRT,
)
def _lv_abort(ctx: Context) -> None:
    peer, args = _libvirt_screenshot(ctx)
    serial = call(peer, LV_SCREENSHOT, args, LIBVIRT_PROG, 1)
    peer.expect_event(Reply, "the primary reply")
    peer.send(StreamAbort(serial))
    wait_for(peer, (StreamConfirm, StreamError), "the abort's confirmation")
    alive(peer, ctx, "§7.3.3")


#: 7.3.1/6 writes [1 MiB, 1 MiB + 300000): a given volume of 2 MiB serves it (the suite's
#: own volumes are used when it can make them).
_DENSE_AT = 1 << 20


# ============================================================================== client cases
# Played by ``xdrstream conformance serve`` from the synthetic traces ``client-*.jsonl``
# (make_traces.client_case_traces): the client under test starts a V2 save of the image named
# ``client-<case id with '-' for '/' and '.'>`` and must react as expected.
def _client_case(ctx: Context) -> None:
    raise Skip("a client case: run `xdrstream conformance serve` and point the client at it")


for _id, _title, _requirement in (
    (
        "4.4.3/1",
        "client: a REPLY for a serial the client is not waiting for closes the connection",
        "§4.4.3: a client receiving a REPLY for a serial it is not waiting for treats it as a "
        "protocol error",
    ),
    (
        "4.4.3/2",
        "client: a REPLY with status CONTINUE closes the connection",
        "§4.4.3: a REPLY with status CONTINUE is a protocol error",
    ),
    (
        "3.4/5",
        "client: an undersized length word from the server closes the connection",
        "§3.4: a length below 28 MUST break the connection (both roles)",
    ),
    (
        "7.3.3/7",
        "client: a STREAM/ERROR mid-download ends the stream; no StreamFinish follows",
        "§7.3.3, §9.3: after StreamError the exchange is CLOSED for the client",
    ),
):
    case(_id, _title, requirement=_requirement,
         expect="the client sends nothing more and closes the connection",
         role="client")(_client_case)  # fmt: skip


# ============================================================================== identity
def identify(ctx: Context) -> Implementation | None:
    """Who a libvirt-program target is, asked of it: CONNECT_GET_TYPE names our storage
    server ``xdrstream``, anything else is libvirtd (its hypervisor driver's type);
    CONNECT_GET_LIB_VERSION gives the version (major * 1e6 + minor * 1e3 + release). None
    for restore.x targets or a target that does not answer these."""
    if ctx.program != "libvirt":
        return None
    try:
        peer, _ = _libvirt_open(ctx, ctx.libvirt.uri)
        kind = _libvirt_call(peer, _lv("CONNECT_GET_TYPE"), None, "CONNECT_GET_TYPE").type
        number = _libvirt_call(
            peer, _lv("CONNECT_GET_LIB_VERSION"), None, "CONNECT_GET_LIB_VERSION"
        ).lib_ver
    except (Skip, Violation, Closed):
        return None
    finally:
        ctx.close_all()
    name = "xdrstream" if kind == "xdrstream" else "libvirtd"
    version = f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
    return Implementation(name, version, "CONNECT_GET_TYPE, CONNECT_GET_LIB_VERSION")


def _lv(name: str) -> int:
    """A procedure number of libvirt's remote program, from the schema."""
    return int(_LV[name])


# ============================================================================== libvirt calls
def _lv_plain_calls(ctx: Context) -> None:
    """4.4.1/1 on libvirt's program: getters and lookups, one reply each, results that
    answer what was asked."""
    peer, schema, dom = _libvirt_domain(ctx)
    number = _libvirt_call(peer, _lv("CONNECT_GET_LIB_VERSION"), None, "GET_LIB_VERSION")
    if not number.lib_ver:
        raise Violation("§4.4.1: CONNECT_GET_LIB_VERSION returned 0")
    found = _libvirt_call(
        peer, LV_DOMAIN_LOOKUP, schema["vir_domain_lookup_by_name_args"](name=dom.name), "lookup"
    ).dom
    if (found.name, bytes(found.uuid)) != (dom.name, bytes(dom.uuid)):
        raise Violation(f"§4.4.1: DOMAIN_LOOKUP_BY_NAME({dom.name!r}) returned {found.name!r}")
    info = _libvirt_call(
        peer, _lv("DOMAIN_GET_INFO"), schema["vir_domain_ref_args"](dom=dom), "DOMAIN_GET_INFO"
    )
    if info.nrVirtCpu < 1:
        raise Violation(f"§4.4.1: DOMAIN_GET_INFO says {info.nrVirtCpu} vCPUs")
    peer.expect_silence(0.2, "§4.4.1: nothing after the single replies")


@case(
    "4.4.1/2",
    "libvirt: a lookup of what the suite made returns it (pool, volume, volume info)",
    requirement="§4.4.1: the REPLY carries the procedure's result",
    expect="the pool and volume named; capacity as made, allocation 0",
    programs=LIBVIRT,
)
def _lv_lookups(ctx: Context) -> None:
    from xdrstream.conformance.fixtures import VOLUME_CAPACITY

    kit = Kit(ctx)
    info = _libvirt_call(
        kit.peer, _lv("STORAGE_VOL_GET_INFO"), kit.schema["vir_vol_ref_args"](vol=kit.vol),
        "STORAGE_VOL_GET_INFO",
    )  # fmt: skip
    if info.capacity != VOLUME_CAPACITY or info.allocation != 0:
        raise Violation(
            f"§4.4.1: the new volume has capacity {info.capacity}, allocation "
            f"{info.allocation}; made with {VOLUME_CAPACITY} and 0"
        )
    pool = _libvirt_call(
        kit.peer, _lv("STORAGE_POOL_LOOKUP_BY_VOLUME"),
        kit.schema["vir_pool_lookup_by_volume_args"](vol=kit.vol), "STORAGE_POOL_LOOKUP_BY_VOLUME",
    ).pool  # fmt: skip
    if pool.name != kit.vol.pool:
        raise Violation(f"§4.4.1: the volume's pool is {pool.name!r}, not {kit.vol.pool!r}")


@case(
    "4.5/2",
    "libvirt: a lookup of a missing domain gets an ERROR reply with libvirt's code and message",
    requirement="§4.5: the error body carries code, domain, message and level",
    expect="REPLY/ERROR, code VIR_ERR_NO_DOMAIN (42), the name in the message; calls go on",
    programs=LIBVIRT,
)
def _lv_error_body(ctx: Context) -> None:
    peer, schema = _libvirt_open(ctx, ctx.libvirt.domain_uri)
    name = "xdrstream-no-such-domain"
    serial = call(
        peer, LV_DOMAIN_LOOKUP, schema["vir_domain_lookup_by_name_args"](name=name), LIBVIRT_PROG
    )
    reply = peer.expect_event((Reply, ErrorReply), "the lookup's reply")
    if not isinstance(reply, ErrorReply) or reply.serial != serial:
        raise Violation(f"§4.5: a lookup of a missing domain succeeded: {reply!r}"[:300])
    error = reply.error
    if error.code != 42 or not error.message or error.level not in (1, 2):
        raise Violation(
            f"§4.5: expected code 42 with a message, got code {error.code} "
            f"level {error.level}: {error.message}"
        )
    alive(peer, ctx, "§4.5")


@case(
    "4.6/2",
    "libvirt: events: a registered lifecycle callback gets MESSAGE notifications",
    requirement="§4.6: a MESSAGE has status OK, serial 0, the procedure's argument type; it "
    "belongs to no exchange",
    expect="DOMAIN_EVENT_CALLBACK_LIFECYCLE messages for suspend and resume, serial 0",
    programs=LIBVIRT,
    deviations=(_LV_EVENT_SERIAL,),
)
def _lv_events(ctx: Context) -> None:
    from xdrstream.protocol.events import Message

    peer, schema, dom = _libvirt_domain(ctx)
    callback = _libvirt_call(
        peer, _lv("CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"),
        schema["vir_domain_event_register_args"](eventID=0, dom=dom), "REGISTER_ANY",
    ).callbackID  # fmt: skip
    ref = schema["vir_domain_ref_args"](dom=dom)
    seen: list[int] = []
    for name in ("DOMAIN_SUSPEND", "DOMAIN_RESUME"):
        serial = call(peer, _lv(name), ref, LIBVIRT_PROG)
        answered = False
        while not answered or len(seen) < (1 if name == "DOMAIN_SUSPEND" else 2):
            event = peer.event(what=f"the reply to {name} and its lifecycle event")
            if isinstance(event, (Reply, ErrorReply)) and event.serial == serial:
                if isinstance(event, ErrorReply):
                    raise Skip(f"libvirt refused {name}: {event.error.message}")
                answered = True
            elif isinstance(event, Message):
                if event.procedure != _lv("DOMAIN_EVENT_CALLBACK_LIFECYCLE"):
                    continue
                body = event.body
                if body.callbackID != callback or body.msg.dom.name != dom.name:
                    raise Violation(f"§4.6: an event for callback {body.callbackID}")
                seen.append(body.msg.event)
            else:
                raise Violation(f"§4.6: unexpected {event!r}"[:300])
    # virDomainEventType: 3 SUSPENDED, 4 RESUMED
    if seen[:2] != [3, 4]:
        raise Violation(f"§4.6: lifecycle events {seen}, expected SUSPENDED (3), RESUMED (4)")
    _libvirt_call(
        peer, _lv("CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY"),
        schema["vir_domain_event_deregister_args"](callbackID=callback), "DEREGISTER_ANY",
    )  # fmt: skip


@case(
    "4.7/4",
    "libvirt: pipelined calls of different procedures each get their own result",
    requirement="§4.7, §4.3.3: replies carry their calls' serials, in any order",
    expect="GET_LIB_VERSION, GET_TYPE, DOMAIN_LOOKUP, DOMAIN_GET_INFO answered, one write",
    programs=LIBVIRT,
)
def _lv_pipelined(ctx: Context) -> None:
    peer, schema, dom = _libvirt_domain(ctx)
    wanted = {
        call(peer, _lv("CONNECT_GET_LIB_VERSION"), None, LIBVIRT_PROG): "lib_ver",
        call(peer, _lv("CONNECT_GET_TYPE"), None, LIBVIRT_PROG): "type",
        call(peer, LV_DOMAIN_LOOKUP, schema["vir_domain_lookup_by_name_args"](name=dom.name),
             LIBVIRT_PROG): "dom",
        call(peer, _lv("DOMAIN_GET_INFO"), schema["vir_domain_ref_args"](dom=dom),
             LIBVIRT_PROG): "nrVirtCpu",
    }  # fmt: skip
    while wanted:
        event = peer.expect_event(Reply, "the pipelined replies")
        field = wanted.pop(event.serial, None)
        if field is None or not hasattr(event.result, field):
            raise Violation(f"§4.7: reply {event.serial} is not one of the calls' results")


@case(
    "4.7/5",
    "a call in the same write as stream data is answered and the stream goes on",
    requirement="§4.7: a client MAY send new calls while streams are open",
    expect="the reply to the call; the upload confirmed",
    programs=ANY,
)
def _call_behind_data(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    data = kit.data()
    kit.peer.send_raw(
        kit.raw(STREAM, 3, CONTINUE, data[:100_000]) + probe_call(ctx, 4)
        + kit.raw(STREAM, 3, CONTINUE, data[100_000:]) + kit.raw(STREAM, 3, OK)
    )  # fmt: skip
    wait_frame(kit.peer, 4, [REPLY], "the reply to the call between the data frames")
    frame = wait_frame(kit.peer, 3, [STREAM], "the upload's confirmation")
    if frame.header.status != OK:
        raise Violation(f"§4.7: the upload failed: {_error_text(frame)}")


@case(
    "3.5/3",
    "end of input inside a stream: the connection ends, the server keeps serving others",
    requirement="§3.5: end of input at a frame boundary is a normal close; exchanges in "
    "progress are abandoned",
    expect="connection closed; a new connection is answered",
    programs=ANY,
)
def _eof_in_stream(ctx: Context) -> None:
    kit = Kit(ctx)
    kit.open_raw(3)
    kit.peer.send_raw(kit.raw(STREAM, 3, CONTINUE, kit.data()[:50_000]))
    kit.peer.shutdown_write()
    kit.peer.expect_close("§3.5")
    alive(ctx.connect(), ctx, "§3.5")


@case(
    "3.5/4",
    "a whole call, then a truncated frame: the call MAY be answered, then the connection closes",
    requirement="§3.5: frames complete before a truncated tail are valid; the truncation is a "
    "protocol error",
    expect="at most the call's reply, then the close",
    programs=ANY,
)
def _call_then_truncated(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send_raw(probe_call(ctx, 1) + probe_call(ctx, 2)[:20])
    peer.shutdown_write()
    peer.expect_close("§3.5", answers=[(1, [REPLY])])


@case(
    "4.3.3/2",
    "serials wrap: 0xffffffff and 0 on one connection are both answered",
    requirement="§4.3.1, §4.3.3: serials wrap around at 2^32; a REPLY carries its call's serial",
    expect="replies with serials 0xffffffff and 0",
    programs=ANY,
)
def _serial_wrap(ctx: Context) -> None:
    peer = ctx.connect()
    for serial in (0xFFFFFFFF, 0):
        peer.send_raw(probe_call(ctx, serial))
        wait_frame(peer, serial, [REPLY], f"the reply to serial {serial:#x}")


@case(
    "4.4.2/5",
    "arguments that do not decode (a string length of 0xfffffff0) close the connection",
    requirement="§4.4.2, §3.4: a body that does not decode as the procedure's type is a "
    "protocol error; no length from the wire is trusted",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(
        Deviation(
            "libvirtd",
            'answers ERROR code 39 (VIR_ERR_RPC) "Unable to decode message payload" and goes on',
            "9.0.0",
        ),
        _ours_as_libvirtd('answers ERROR code 39 "Unable to decode message payload"'),
    ),
)
def _undecodable_args(ctx: Context) -> None:
    if ctx.program == "libvirt":  # CONNECT_OPEN(name = a string of 0xfffffff0 bytes)
        frame = raw(LV_OPEN, CALL, 1, OK, b"\0\0\0\1\xff\xff\xff\xf0", prog=LIBVIRT_PROG)
    else:  # ECHO(data = 0xfffffff0 bytes)
        frame = raw(ECHO, CALL, 1, OK, b"\xff\xff\xff\xf0")
    _closes_on(ctx, frame, "§4.4.2")


@case(
    "5/4",
    "a CALL to the keepalive program is a call of an unknown procedure: ERROR reply",
    requirement="§5, §4.4.2: a CALL to the keepalive program gets an ERROR reply",
    expect="REPLY/ERROR; later calls answered",
    programs=ANY,
)
def _keepalive_call(ctx: Context) -> None:
    _unknown(ctx, KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, KEEPALIVE_PING, "§5")


@case(
    "5/5",
    "a keepalive PING with a non-zero serial closes the connection",
    requirement="§5: a keepalive MESSAGE with a serial other than 0 is a protocol error",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_KEEPALIVE,),
)
def _keepalive_serial(ctx: Context) -> None:
    frame = raw(KEEPALIVE_PING, MESSAGE, 7, OK, b"", prog=KEEPALIVE_PROGRAM, vers=KEEPALIVE_VERSION)
    _closes_on(ctx, frame, "§5")


@case(
    "5/6",
    "an unsolicited keepalive PONG gets no answer and the connection continues",
    requirement="§5: PING and PONG MAY be sent at any time by either role",
    expect="no answer; later calls answered",
    programs=ANY,
)
def _unsolicited_pong(ctx: Context) -> None:
    peer = ctx.connect()
    peer.send(KeepalivePong())
    peer.expect_silence(0.3, "§5: nothing answers a PONG")
    alive(peer, ctx, "§5")


@case(
    "4.4.1/3",
    "a CALL with status ERROR closes the connection",
    requirement="§4.4.1: a CALL has status OK",
    expect="connection closed, no answer",
    programs=ANY,
    deviations=(_LV_STATUS,),
)
def _call_status_error(ctx: Context) -> None:
    frame = probe_call(ctx, 1)
    _closes_on(ctx, frame[:24] + int(ERROR).to_bytes(4, "big") + frame[28:], "§4.4.1")


@case(
    "2.1/1",
    "over TLS: a call is answered and a V2 stream completes",
    requirement="§2.1: the protocol does not depend on the transport (TCP, Unix socket, TLS)",
    expect="the reply; the upload confirmed",
    programs=ANY,
)
def _over_tls(ctx: Context) -> None:
    if ctx.tls is None:
        raise Skip("the target is not reached over TLS (give a tls: target and --tls-ca)")
    kit = Kit(ctx)
    kit.ping()
    kit.upload(chunks(kit.data()), "§2.1")
