"""The blocking and asyncio drivers on real socket pairs: the blocking server role, both
client drivers, partial sends, backpressure (bounded memory), failure paths of each
variant, stall timeouts, keepalive and idle timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from xdrstream.protocol import Program, Role, programs_from_schema
from xdrstream.protocol.framing import (
    KEEPALIVE_PING,
    KEEPALIVE_PONG,
    KEEPALIVE_PROGRAM,
    KEEPALIVE_VERSION,
    Header,
    MessageType,
    pack_header,
)
from xdrstream.restore.server import (
    PROC_ECHO,
    PROGRAM,
    RESTORE_PROCS,
    SAVE_PROCS,
    VERSION,
    schema,
)
from xdrstream.transport import channels
from xdrstream.transport.aio import AsyncChannel, AsyncConnection
from xdrstream.transport.blocking import BlockingConnection, SocketChannel, TLSChannel
from xdrstream.transport.errors import (
    ConnectionLost,
    PeerTimeout,
    RemoteFailure,
    ServerError,
    StreamAborted,
    StreamClosed,
    TransportError,
)
from xdrstream.transport.options import Options
from xdrstream.transport.stream import BlockingStream, Hole, Stream
from xdrstream.transport.tls import client_context, server_context

S = schema()
VARIANTS = [1, 2, 3]
MIB = 1 << 20


def small_buffers(sock: socket.socket) -> socket.socket:
    """Tiny kernel buffers: every large frame goes out in many partial sends."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def pattern(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class BlockingServer:
    """A blocking-driver server for restore.x kept in memory: uploads are hashed (holes
    as zeros), downloads come from ``blobs`` (a Hole item is sent as a hole)."""

    def __init__(self, sock: socket.socket, options: Options | None = None) -> None:
        self.conn = BlockingConnection(SocketChannel(sock), Role.SERVER, [S], options)
        self.conn.start()
        self.received: dict[str, tuple[str, int, int]] = {}
        self.blobs: dict[str, list[bytes | Hole]] = {}
        self.sent: list[bytes | Hole] = []  # items handed to stream.send so far
        self.hold = threading.Event()  # handlers that should stall wait on it
        self.thread = threading.Thread(target=self.conn.serve, args=(self.handle,), daemon=True)
        self.thread.start()

    def handle(self, stream: BlockingStream) -> Any:
        assert stream.call is not None
        proc, args = stream.call.procedure, stream.args
        if proc == PROC_ECHO:
            return S["xs_echo_ret"](data=bytes(args.data))
        if proc in RESTORE_PROCS.values():
            stream.accept(S["xs_restore_ret"](length=0))
            if args.name == "stall":
                self.hold.wait(10)
            if args.name.startswith("fail"):
                stream.recv()
                raise ServerError(55, f"refused {args.name}")
            digest, data, holes = hashlib.sha256(), 0, 0
            while (chunk := stream.recv()) is not None:
                if isinstance(chunk, Hole):
                    digest.update(bytes(chunk.length))
                    holes += chunk.length
                else:
                    digest.update(chunk)
                    data += len(chunk)
            self.received[args.name] = (digest.hexdigest(), data, holes)
            stream.complete(S["xs_restore_ret"](length=data + holes))
            return None
        assert proc in SAVE_PROCS.values()
        stream.accept(S["xs_save_ret"](length=0))
        total = 0
        for item in self.blobs[args.name]:
            self.sent.append(item)
            if isinstance(item, Hole):
                stream.send_hole(item.length)
                total += item.length
            else:
                stream.send(item)
                total += len(item)
        stream.end(S["xs_save_ret"](length=total))
        return None

    def close(self) -> None:
        self.hold.set()
        self.conn.close()
        self.thread.join(10)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def restore_args(name: str) -> Any:
    return S["xs_restore_args"](name=name, size_hint=0, flags=0)


def save_args(name: str) -> Any:
    return S["xs_save_args"](name=name, flags=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocking_server_role_with_blocking_client_and_partial_sends(
    pair: tuple[socket.socket, socket.socket], variant: int
) -> None:
    client_sock, server_sock = (small_buffers(s) for s in pair)
    server = BlockingServer(server_sock)
    data = pattern(3 * MIB + 12345, variant)
    server.blobs["sparse"] = [data[:MIB], Hole(5 * MIB), data[MIB:]]
    client = BlockingConnection(SocketChannel(client_sock), Role.CLIENT, [S])
    client.start()
    try:
        echo = client.call(PROGRAM, VERSION, PROC_ECHO, S["xs_echo_args"](data=b"x" * 60000))
        assert echo.data == b"x" * 60000
        up = client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[variant], restore_args("up"))
        up.send(data[:MIB])  # one call, many frames
        up.send_hole(2 * MIB)
        up.send(data[MIB:])
        result = up.finish()
        expected = hashlib.sha256(data[:MIB] + bytes(2 * MIB) + data[MIB:]).hexdigest()
        assert server.received["up"] == (expected, len(data), 2 * MIB)
        if variant == 3:
            assert result.length == len(data) + 2 * MIB

        down = client.open_stream(PROGRAM, VERSION, SAVE_PROCS[variant], save_args("sparse"))
        got = bytearray()
        holes = []
        for chunk in down:
            if isinstance(chunk, Hole):
                holes.append(chunk.length)
                got += bytes(chunk.length)
            else:
                got += chunk
        assert holes == [5 * MIB]
        assert bytes(got) == data[:MIB] + bytes(5 * MIB) + data[MIB:]
        assert down.closed and down.recv() is None
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocking_server_role_with_async_client(
    pair: tuple[socket.socket, socket.socket], variant: int
) -> None:
    client_sock, server_sock = (small_buffers(s) for s in pair)
    server = BlockingServer(server_sock)
    data = pattern(2 * MIB + 7, variant)
    server.blobs["d"] = [data]

    async def main() -> bytes:
        client = AsyncConnection(AsyncChannel(client_sock), Role.CLIENT, [S])
        client.start()
        async with client:
            up = await client.open_stream(
                PROGRAM, VERSION, RESTORE_PROCS[variant], restore_args("u")
            )
            await up.send(data)
            await up.finish()
            down = await client.open_stream(PROGRAM, VERSION, SAVE_PROCS[variant], save_args("d"))
            got = bytearray()
            async for chunk in down:
                assert isinstance(chunk, memoryview)
                got += chunk
            return bytes(got)

    try:
        assert asyncio.run(main()) == data
        assert server.received["u"] == (hashlib.sha256(data).hexdigest(), len(data), 0)
    finally:
        server.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_server_failure_mid_upload_reaches_the_client(
    pair: tuple[socket.socket, socket.socket], variant: int
) -> None:
    """§7.2.5 / §7.3.3 / §7.4.3: the server fails while the client is still sending."""
    server = BlockingServer(pair[1])
    client = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S])
    client.start()
    try:
        up = client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[variant], restore_args("fail1"))
        with pytest.raises(RemoteFailure) as info:
            for _ in range(200):
                up.send(bytes(256 * 1024))
            up.finish()
        assert info.value.code == 55 and info.value.message == "refused fail1"
        assert up.closed
        # the late frames were dropped, the connection carries on
        echo = client.call(PROGRAM, VERSION, PROC_ECHO, S["xs_echo_args"](data=b"ok"))
        assert echo.data == b"ok"
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_async_server_role_abort_and_failure(
    pair: tuple[socket.socket, socket.socket], variant: int
) -> None:
    """An asyncio server handler sees the client's abort as StreamAborted; a handler
    exception becomes an error the client raises with its message."""
    seen: list[str] = []

    async def handler(stream: Stream) -> Any:
        args = stream.args
        await stream.accept(S["xs_restore_ret"](length=0))
        if args.name == "boom":
            await stream.recv()
            raise RuntimeError("disk on fire")
        try:
            while await stream.recv() is not None:
                pass
        except StreamAborted:
            seen.append("aborted")
            raise
        return None

    async def main() -> None:
        server = AsyncConnection(AsyncChannel(pair[1]), Role.SERVER, [S], handler=handler)
        server.start()
        client = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S])
        client.start()
        proc = RESTORE_PROCS[variant]
        up = await client.open_stream(PROGRAM, VERSION, proc, restore_args("a"))
        await up.send(bytes(MIB))
        await up.abort()
        assert up.closed
        up = await client.open_stream(PROGRAM, VERSION, proc, restore_args("boom"))
        with pytest.raises(RemoteFailure, match="RuntimeError: disk on fire"):
            for _ in range(100):
                await up.send(bytes(65536))
            await up.finish()
        await client.close()
        await server.close()

    asyncio.run(main())
    assert seen == ["aborted"]


def test_a_cancelled_close_still_closes_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A server shutting down cancels connections that are still closing (their handlers
    cleaning up): the socket is closed at once, not left to the garbage collector."""
    in_handler = asyncio.Event()

    async def handler(stream: Stream) -> Any:
        await stream.accept(S["xs_restore_ret"](length=0))
        in_handler.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(5)  # a slow clean-up, cut short by the second cancel

    async def main() -> None:
        server = AsyncConnection(AsyncChannel(pair[1]), Role.SERVER, [S], handler=handler)
        server.start()
        client = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S])
        client.start()
        await client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[2], restore_args("a"))
        await in_handler.wait()
        closing = asyncio.ensure_future(server.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # waiting for the handler's clean-up
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert pair[1].fileno() == -1
        await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("driver", ["blocking", "async"])
def test_slow_reader_bounds_what_is_buffered(
    pair: tuple[socket.socket, socket.socket], driver: str
) -> None:
    """A download the application does not read: the client stops reading the socket
    once a stream holds ``stream_buffer`` unconsumed bytes, and the server's sender waits
    (it has not produced everything); reading on delivers every byte."""
    limit = 2 * MIB
    server = BlockingServer(pair[1])
    data = pattern(48 * MIB, 3)
    server.blobs["big"] = [data[i : i + MIB] for i in range(0, len(data), MIB)]
    options = Options(stream_buffer=limit, recv_buffer=256 * 1024)

    def check(engine: Any, serial: int) -> None:
        assert len(server.sent) < len(server.blobs["big"])  # the sender is held back
        info = engine.stream_info(serial)
        assert info is not None
        assert info.unconsumed <= limit + options.recv_buffer
        assert engine.buffered <= options.recv_buffer + 256 * 1024
        assert engine.reading_paused

    try:
        if driver == "blocking":
            client = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S], options)
            client.start()
            with client:
                down = client.open_stream(PROGRAM, VERSION, SAVE_PROCS[2], save_args("big"))
                first = down.recv()
                assert isinstance(first, memoryview)
                deadline = time.monotonic() + 20
                while not client.engine.reading_paused and time.monotonic() < deadline:
                    time.sleep(0.05)
                check(client.engine, down.serial)
                got = hashlib.sha256(first)
                for chunk in down:
                    assert isinstance(chunk, memoryview)
                    got.update(chunk)
        else:

            async def main() -> Any:
                client = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S], options)
                client.start()
                async with client:
                    proc = SAVE_PROCS[2]
                    down = await client.open_stream(PROGRAM, VERSION, proc, save_args("big"))
                    first = await down.recv()
                    assert isinstance(first, memoryview)
                    deadline = time.monotonic() + 20
                    while not client.engine.reading_paused and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    check(client.engine, down.serial)
                    digest = hashlib.sha256(first)
                    async for chunk in down:
                        assert isinstance(chunk, memoryview)
                        digest.update(chunk)
                    return digest

            got = asyncio.run(main())
        assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        server.close()


def test_stalled_peer_makes_the_sender_time_out(pair: tuple[socket.socket, socket.socket]) -> None:
    """The server's handler stops consuming: the server stops reading, the client's send
    waits and then gives up with PeerTimeout instead of buffering."""
    server = BlockingServer(pair[1], Options(stream_buffer=MIB))
    client = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S], Options(timeout=0.5))
    client.start()
    sent = 0
    try:
        up = client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[2], restore_args("stall"))
        with pytest.raises(PeerTimeout, match="stopped reading"):
            for _ in range(400):
                up.send(bytes(256 * 1024))
                sent += 256 * 1024
        assert sent < 16 * MIB  # bounded by buffers, not by the 100 MiB offered
        assert isinstance(client.error, PeerTimeout)
        with pytest.raises(ConnectionLost):
            client.call(PROGRAM, VERSION, PROC_ECHO, S["xs_echo_args"](data=b""))
    finally:
        client.close()
        server.close()


def silent_peer(sock: socket.socket, stop: threading.Event, answer: bool) -> threading.Thread:
    """Reads everything; answers PINGs with PONGs only if ``answer``."""
    pong = pack_header(
        Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, KEEPALIVE_PONG, MessageType.MESSAGE, 0, 0)
    )

    def run() -> None:
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if answer:
                for _ in range(data.count(KEEPALIVE_PROGRAM.to_bytes(4, "big"))):
                    sock.sendall(pong)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("driver", ["blocking", "async"])
@pytest.mark.parametrize("answer", [True, False])
def test_keepalive_declares_a_silent_peer_dead(
    pair: tuple[socket.socket, socket.socket], driver: str, answer: bool
) -> None:
    stop = threading.Event()
    thread = silent_peer(pair[1], stop, answer)
    # an answering peer gets a wide margin: the machine may be loaded
    options = Options(timeout=None, keepalive_interval=0.2, keepalive_count=8 if answer else 3)
    try:
        if driver == "blocking":
            conn = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S], options)
            conn.start()
            time.sleep(2.0)
            error = conn.error
            conn.close()
        else:

            async def main() -> Any:
                conn = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S], options)
                conn.start()
                await asyncio.sleep(2.0)
                error = conn.error
                await conn.close()
                return error

            error = asyncio.run(main())
    finally:
        stop.set()
        thread.join()
    if answer:
        assert error is None  # PONGs keep the connection alive
    else:
        assert isinstance(error, PeerTimeout) and "no answer to 3 keepalive pings" in str(error)


@pytest.mark.parametrize("driver", ["blocking", "async"])
def test_pings_are_answered_and_idle_connections_closed(
    pair: tuple[socket.socket, socket.socket], driver: str
) -> None:
    """Server role: a PING gets a PONG (§5); with nothing in progress and nothing received
    for ``idle_timeout`` the server closes the connection."""
    options = Options(idle_timeout=0.6)
    ping = pack_header(
        Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, KEEPALIVE_PING, MessageType.MESSAGE, 0, 0)
    )
    expected_pong = pack_header(
        Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, KEEPALIVE_PONG, MessageType.MESSAGE, 0, 0)
    )
    raw = pair[0]
    raw.settimeout(5)

    def exercise() -> tuple[bytes, bytes]:
        raw.sendall(ping)
        answer = raw.recv(100)
        eof = raw.recv(100)  # the server closes the idle connection
        return answer, eof

    if driver == "blocking":
        conn = BlockingConnection(SocketChannel(pair[1]), Role.SERVER, [S], options)
        conn.start()
        answer, eof = exercise()
        conn.close()
    else:

        async def main() -> tuple[bytes, bytes]:
            async def never(stream: Stream) -> None:
                raise AssertionError("no call expected")

            conn = AsyncConnection(AsyncChannel(pair[1]), Role.SERVER, [S], options, never)
            conn.start()
            result = await asyncio.get_running_loop().run_in_executor(None, exercise)
            await conn.close()
            return result

        answer, eof = asyncio.run(main())
    assert answer == expected_pong
    assert eof == b""


def test_misuse_is_refused_clearly(pair: tuple[socket.socket, socket.socket]) -> None:
    server = BlockingServer(pair[1])
    server.blobs["b"] = [b"abc"]
    client = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S])
    client.start()
    try:
        down = client.open_stream(PROGRAM, VERSION, SAVE_PROCS[2], save_args("b"))
        with pytest.raises(TransportError, match="for upload streams"):
            down.send(b"x")
        assert bytes(down.recv() or b"") == b"abc"
        assert down.recv() is None and down.closed
        up = client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[2], restore_args("u"))
        with pytest.raises(TransportError, match="for download streams"):
            up.recv()
        up.send(b"data")
        up.finish()
        with pytest.raises(StreamClosed):
            up.send(b"more")
        with pytest.raises(TransportError, match="use open_stream"):
            client.call(PROGRAM, VERSION, RESTORE_PROCS[2], restore_args("v"))
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocking_server_role_over_tls(
    pair: tuple[socket.socket, socket.socket], tmp_path: Any, variant: int
) -> None:
    """Both ends on the blocking driver with TLS (SSLObject over the socket pair), with
    a client certificate the server verifies."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "client.pem")
    )
    server_ctx = server_context(
        tmp_path / "server.pem", tmp_path / "server.pem", tmp_path / "ca.pem", True
    )
    client_ctx = client_context(tmp_path / "ca.pem", tmp_path / "client.pem")
    accepted: list[BlockingConnection] = []
    acceptor = threading.Thread(
        target=lambda: accepted.append(BlockingConnection.accept(pair[1], [S], tls=server_ctx))
    )
    acceptor.start()
    channel = TLSChannel(small_buffers(pair[0]), client_ctx, False, "localhost", "pair")
    channel.handshake(10)
    acceptor.join(10)
    client = BlockingConnection(channel, Role.CLIENT, [S])
    client.start()
    server_conn = accepted[0]
    assert server_conn.peer_certificate is not None  # the client's, verified
    received: list[bytes] = []
    data = pattern(2 * MIB + 1, variant)

    def handler(stream: BlockingStream) -> None:
        if stream.direction == "upload":
            stream.accept(S["xs_restore_ret"](length=0))
            received.append(b"".join(bytes(c) for c in stream if isinstance(c, memoryview)))
            stream.complete(S["xs_restore_ret"](length=len(received[-1])))
        else:
            stream.accept(S["xs_save_ret"](length=0))
            stream.send(data[::-1])
            stream.end(S["xs_save_ret"](length=len(data)))

    serving = threading.Thread(target=server_conn.serve, args=(handler,), daemon=True)
    serving.start()
    try:
        up = client.open_stream(PROGRAM, VERSION, RESTORE_PROCS[variant], restore_args("t"))
        up.send(data)
        up.finish()
        assert received == [data]
        down = client.open_stream(PROGRAM, VERSION, SAVE_PROCS[variant], save_args("t"))
        assert b"".join(bytes(c) for c in down if isinstance(c, memoryview)) == data[::-1]
    finally:
        client.close()
        server_conn.close()
        serving.join(10)


@pytest.mark.parametrize("driver", ["blocking", "async"])
def test_a_call_to_a_silent_peer_times_out(
    pair: tuple[socket.socket, socket.socket], driver: str
) -> None:
    """The peer reads our call but never answers: after ``timeout`` seconds without any
    input the wait ends with PeerTimeout and the connection is closed."""
    stop = threading.Event()
    thread = silent_peer(pair[1], stop, answer=False)
    options = Options(timeout=0.5)
    echo = S["xs_echo_args"](data=b"?")
    try:
        if driver == "blocking":
            conn = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S], options)
            conn.start()
            with conn, pytest.raises(PeerTimeout, match=r"nothing received for 0\.5 s"):
                conn.call(PROGRAM, VERSION, PROC_ECHO, echo)
            assert isinstance(conn.error, PeerTimeout)
        else:

            async def main() -> None:
                conn = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S], options)
                conn.start()
                async with conn:
                    with pytest.raises(PeerTimeout, match=r"nothing received for 0\.5 s"):
                        await conn.call(PROGRAM, VERSION, PROC_ECHO, echo)
                    assert isinstance(conn.error, PeerTimeout)

            asyncio.run(main())
    finally:
        stop.set()
        thread.join()


def without_procedure(number: int) -> list[Program]:
    """restore.x's programs as a server that does not implement ``number`` sees them."""
    return [
        Program(p.number, p.version, {n: q for n, q in p.procedures.items() if n != number})
        for p in programs_from_schema(S)
    ]


def test_v3_upload_to_an_unknown_procedure_fails_and_the_connection_goes_on(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A V3 client streams before the reply (§7.4.1); the blocking server does not know the
    procedure: its error reply reaches the client, the data already sent is dropped as
    late frames (§4.4.2, §10.2) and the connection stays usable."""
    proc = RESTORE_PROCS[3]
    server = BlockingConnection(
        SocketChannel(pair[1]), Role.SERVER, without_procedure(proc), Options(timeout=10)
    )
    server.start()
    thread = threading.Thread(
        target=server.serve, args=(lambda s: S["xs_echo_ret"](data=bytes(s.args.data)),)
    )
    thread.start()
    client = BlockingConnection(SocketChannel(pair[0]), Role.CLIENT, [S], Options(timeout=10))
    client.start()
    try:
        for _ in range(2):  # the serial after a refused stream works the same way
            up = client.open_stream(PROGRAM, VERSION, proc, restore_args("nobody-home"))
            with pytest.raises(RemoteFailure, match="unknown procedure"):
                for _ in range(64):
                    up.send(bytes(65536))
                up.finish()
            echo = client.call(PROGRAM, VERSION, PROC_ECHO, S["xs_echo_args"](data=b"alive"))
            assert bytes(echo.data) == b"alive"
        assert client.error is None and server.error is None
    finally:
        client.close()
        server.close()
        thread.join(10)


def test_async_server_drops_a_v3_stream_to_an_unknown_procedure(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    proc = RESTORE_PROCS[3]

    async def handler(stream: Stream) -> Any:
        return S["xs_echo_ret"](data=bytes(stream.args.data))

    async def main() -> None:
        server = AsyncConnection(
            AsyncChannel(pair[1]), Role.SERVER, without_procedure(proc), handler=handler
        )
        server.start()
        client = AsyncConnection(AsyncChannel(pair[0]), Role.CLIENT, [S])
        client.start()
        up = await client.open_stream(PROGRAM, VERSION, proc, restore_args("x"))
        with pytest.raises(RemoteFailure, match="unknown procedure"):
            for _ in range(64):
                await up.send(bytes(65536))
            await up.finish()
        echo = await client.call(PROGRAM, VERSION, PROC_ECHO, S["xs_echo_args"](data=b"ok"))
        assert bytes(echo.data) == b"ok"
        assert client.error is None and server.error is None
        await client.close()
        await server.close()

    asyncio.run(main())


def test_unix_sockets_get_the_send_buffer_of_the_options_and_tcp_keeps_autotuning() -> None:
    """A Unix stream socket's bytes in flight are bounded by its sender's SO_SNDBUF: the
    drivers size it (both ends, both drivers, in channel_for) to
    ``Options.unix_send_buffer`` so that a 256 KiB frame fits; 0 leaves the system's
    default; TCP sockets are not touched (autotuning)."""
    size = 3 * MIB // 2
    with open("/proc/sys/net/core/wmem_max") as limit:
        granted = min(size, int(limit.read()))  # Linux caps it (and reports it doubled)

    def sndbuf(sock: socket.socket) -> int:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    assert Options().unix_send_buffer >= 4 * 262144  # four default frames in flight
    a, b = socket.socketpair()
    untouched = sndbuf(b)
    channel = channels.channel_for(
        a, None, Options(unix_send_buffer=size), SocketChannel, TLSChannel
    )
    assert isinstance(channel, SocketChannel) and sndbuf(a) >= granted
    channels.size_buffers(b, Options(unix_send_buffer=0))
    assert sndbuf(b) == untouched
    a.close()
    b.close()

    listener = socket.create_server(("127.0.0.1", 0))
    tcp = socket.create_connection(listener.getsockname())
    before = sndbuf(tcp)
    channels.size_buffers(tcp, Options(unix_send_buffer=size))
    assert sndbuf(tcp) == before
    tcp.close()
    listener.close()
