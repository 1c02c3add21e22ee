"""Regenerate the committed traces under ``xdrstream/conformance/traces/``.

    python -m xdrstream.conformance.make_traces [--out DIR] [--libvirt-fixtures DIR]

Every ``restore.x`` trace is a real session recorded through the recording proxy
(:mod:`.recorder`) between a client and the reference server (QEMU stub endpoints) on Unix
sockets in a temporary directory:

* ``v{1,2,3}-{upload,download}``: the reference client (:class:`~xdrstream.restore.client.
  Client`, 16 KiB chunks) restoring the stub's synthetic stream of 200000 bytes with a hole
  in the middle, and saving one (``200000:7``);
* client cases (``client-*``): synthetic server sides that misbehave after a V2 save of
  the image named ``client-<case id>``, for ``conformance serve``;
* error paths: catalogue cases run through the proxy with the conformance client (server
  rejects a stream, client aborts, unknown procedure, keepalive, V3 early error, data before
  the reply, bad length word ...), one trace per case.

The libvirt traces are converted from the real virsh <-> libvirtd captures committed in
``tests/fixtures/libvirt`` (``--libvirt-fixtures``; skipped when absent); the dense
``libvirt-vol-{upload,download}`` traces are recorded through the recording proxy from a
private libvirtd by ``tests/conformance/make_libvirt_traces.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from xdrstream.capture.decode import DecodedMessage, Decoder
from xdrstream.capture.pcap import FlowDirection, reassemble_capture
from xdrstream.conformance import recorder
from xdrstream.conformance.catalogue import CATALOGUE, Context, all_cases, run_case
from xdrstream.conformance.trace import C2S, S2C, Trace, TraceFrame, write
from xdrstream.endpoints.qemu_stub import synthetic_bytes
from xdrstream.protocol import bodies
from xdrstream.protocol.events import RemoteError
from xdrstream.restore.client import Client
from xdrstream.restore.server import RestoreServer, ServerThread
from xdrstream.transport import address as addresses
from xdrstream.transport.options import Options
from xdrstream.transport.stream import Hole

SIZE = 200_000
SEED = 7
HOLE_AT, HOLE_LEN = 100_000, 50_000

#: Catalogue cases recorded as error-path traces: (case id, file name).
CASE_TRACES: Sequence[tuple[str, str]] = (
    ("7.3.1/5", "v2-upload-rejected"),
    ("7.3.3/1", "v2-upload-client-abort"),
    ("7.3.3/3", "v2-download-client-abort"),
    ("7.2.5/1", "v1-upload-client-abort"),
    ("7.4.3/1", "v3-upload-early-error"),
    ("7.4.3/4", "v3-upload-rejected"),
    ("7.1.4/1", "v2-upload-refused"),
    ("4.4.2/3", "unknown-procedure"),
    ("4.4.2/1", "unknown-program"),
    ("5/1", "keepalive"),
    ("7.3.1/2", "v2-data-before-reply"),
    ("7.3.1/4", "v2-finish-twice"),
    ("3.4/1", "length-undersized"),
    ("3.5/1", "truncated-frame"),
    ("4.3.2/1", "serial-in-use"),
)

#: Cases whose amount of server data depends on timing (data in flight at an abort).
LOOSE_DATA = frozenset({"7.3.3/3"})


def loosen_server_data(trace: Trace) -> None:
    """Mark the server's data frames ``"payload": "any"``: a replay accepts any amount."""
    for index, frame in enumerate(trace.frames):
        stream_data = frame.data[16:20] == b"\0\0\0\3" and frame.data[24:28] == b"\0\0\0\2"
        if frame.direction == S2C and len(frame.data) > 28 and stream_data:
            trace.frames[index] = dataclasses.replace(frame, expect={"payload": "any"})


#: Cases whose frames themselves depend on timing: not replayed (the case itself runs).
TIMING = {
    "7.2.5/1": "an ABORT cancels the V1 calls not yet answered (§7.2.5): whether the data "
    "call was acknowledged first depends on timing",
}


#: Real libvirt captures converted: (fixture, trace name, cases, variant direction).
LIBVIRT_FIXTURES: Sequence[tuple[str, str, list[str], str | None]] = (
    ("screenshot", "libvirt-screenshot", ["7.3.2/2"], "download"),
    ("vol-upload-sparse", "libvirt-vol-upload-sparse", ["7.3.1/6", "7.3.4/2"], "upload"),
    ("vol-download-sparse", "libvirt-vol-download-sparse", ["7.3.4/2"], "download"),
    ("vol-info-missing", "libvirt-vol-info-missing", ["4.5/1"], None),
    ("keepalive", "libvirt-keepalive", ["5/1"], None),
)


#: Captures whose server answers carry the recording daemon's own pool UUID (random per
#: pool), which the client's later calls echo: they replay identically only against it.
POOL_UUID_NOTE = (
    "the recorded answers carry the recording libvirtd's pool UUID (random per pool), which "
    "the client's later calls send back: identical only against that daemon"
)
LIBVIRT_OWN_POOL = frozenset(
    {"libvirt-vol-upload-sparse", "libvirt-vol-download-sparse", "libvirt-vol-info-missing",
     "libvirt-keepalive"}
)  # fmt: skip


def image_items() -> list[bytes | Hole]:
    data = synthetic_bytes(SIZE, SEED)
    return [data[:HOLE_AT], Hole(HOLE_LEN), data[HOLE_AT + HOLE_LEN :]]


def _record(
    upstream: addresses.Address, work: Path, name: str, session: Callable[[addresses.Address], None]
) -> list[recorder.Session]:
    listen = addresses.parse_address(f"unix:{work / (name + '.sock')}")
    with recorder.RecordingProxy(listen, upstream) as proxy:
        session(proxy.address)
        return proxy.wait(len(proxy.sessions) or 1, timeout=30)


def client_traces(upstream: addresses.Address, work: Path) -> dict[str, Trace]:
    out: dict[str, Trace] = {}
    options = Options(chunk_size=16384, timeout=20)
    for variant in (1, 2, 3):

        def restore(address: addresses.Address, variant: int = variant) -> None:
            with Client.connect(address, options=options) as client:
                client.restore(image_items(), variant, name=f"trace-v{variant}")

        def save(address: addresses.Address, variant: int = variant) -> None:
            with Client.connect(address, options=options) as client:
                client.save(lambda chunk: None, variant, name=f"{SIZE}:{SEED}")

        section = {1: ("7.2.2/1", "7.2.3/1"), 2: ("7.3.1/1", "7.3.2/1"), 3: ("7.4.1/1", "7.4.2/1")}
        up_case, down_case = section[variant]
        for direction, run, case_id in (
            ("upload", restore, up_case),
            ("download", save, down_case),
        ):
            name = f"v{variant}-{direction}"
            sessions = _record(upstream, work, name, run)
            trace = recorder.to_trace(
                sessions,
                programs=["restore"],
                variant=f"v{variant}",
                direction=direction,
                description=f"V{variant} {'restore' if direction == 'upload' else 'save'} "
                "by the reference client, reference server with the QEMU stub",
                cases=[case_id],
            )
            if variant == 1 and direction == "download":
                trace.extra["replay"] = False
                trace.extra["replay_note"] = (
                    "the size of each READ answer depends on the endpoint's timing (§7.2.3 "
                    "allows 1..max_bytes), so the recorded READ calls may not fetch it all"
                )
            out[name] = trace
    return out


def case_traces(upstream: addresses.Address, work: Path) -> dict[str, Trace]:
    all_cases()
    out: dict[str, Trace] = {}
    for case_id, name in CASE_TRACES:
        item = CATALOGUE[case_id]

        def session(address: addresses.Address, case_id: str = case_id) -> None:
            result = run_case(CATALOGUE[case_id], Context(address, timeout=10), strict=True)
            if result.outcome != "pass":
                raise RuntimeError(f"case {case_id} did not pass while recording: {result.detail}")

        sessions = _record(upstream, work, name.replace("/", "_"), session)
        trace = recorder.to_trace(
            sessions, programs=["restore"], description=f"{case_id}: {item.title}", cases=[case_id]
        )
        trace.extra["client_testable"] = False  # scripted by the conformance client
        if case_id in LOOSE_DATA:
            loosen_server_data(trace)
        if case_id in TIMING:
            trace.extra["replay"] = False
            trace.extra["replay_note"] = TIMING[case_id]
        out[name] = trace
    return out


def client_case_name(case_id: str) -> str:
    """The save name a client under test asks for to get client case ``case_id``."""
    return "client-" + case_id.replace("/", "-").replace(".", "-")


def client_case_traces() -> dict[str, Trace]:
    """Synthetic traces of the catalogue's client cases: the server misbehaves after a V2
    save call, the expected client side is to send nothing more and close."""
    from xdrstream.conformance.cases import SAVE_PROC, pack_args, raw, save_args

    proc = SAVE_PROC[2]
    ok_ret = bytes(8)  # xs_save_ret {length = 0}
    error = bodies.pack_error(RemoteError(code=9, domain=38, message="synthetic failure"))
    bad_server: dict[str, list[bytes]] = {
        "4.4.3/1": [raw(proc, 1, 1, 0, ok_ret)],
        "4.4.3/2": [raw(proc, 1, 0, 2, ok_ret)],
        "3.4/5": [(20).to_bytes(4, "big") + bytes(16)],
        "7.3.3/7": [
            raw(proc, 1, 0, 0, ok_ret),
            raw(proc, 3, 0, 2, b"x" * 1000),
            raw(proc, 3, 0, 1, error),
        ],
    }
    out: dict[str, Trace] = {}
    for case_id, frames in bad_server.items():
        name = client_case_name(case_id)
        call = raw(proc, 0, 0, 0, pack_args(proc, save_args(name)))
        lines = [TraceFrame(C2S, call)]
        lines += [TraceFrame(S2C, f, partial=len(f) < 28) for f in frames]
        lines += [TraceFrame(C2S, close=True), TraceFrame(S2C, close=True)]
        out[name] = Trace(
            lines,
            variant="v2",
            direction="download",
            description=f"{case_id}: {CATALOGUE[case_id].title}",
            cases=[case_id],
            extra={"source": "make_traces (synthetic)", "client_must_close": True,
                   "replay": False, "replay_note": "a client case: for conformance serve"},
        )  # fmt: skip
    return out


def capture_trace(pcapng: Path, port: int) -> list[TraceFrame]:
    """The frames of a capture's (first) libvirt connection in the order Wireshark shows
    them, with each side's close (its FIN or RST) where the capture has it, capture-relative
    times left out (the capture helper's UDP probes skipped)."""
    data = pcapng.read_bytes()
    flows = [f for f in reassemble_capture(data, server_port=port).flows if port in
             (f.client.port, f.server.port)]  # fmt: skip
    if not flows:
        raise ValueError(f"{pcapng}: no TCP connection on port {port}")
    flow = flows[0]
    numbered: list[tuple[int, TraceFrame]] = []  # (packet that completed it, frame)
    for message in Decoder.with_schemas().decode_capture(data, port):
        if not isinstance(message, DecodedMessage) or message.source is None:
            continue
        if message.source != str(flow.client) and message.source != str(flow.server):
            continue
        direction = FlowDirection.CLIENT_TO_SERVER if message.source == str(flow.client) else (
            FlowDirection.SERVER_TO_CLIENT)  # fmt: skip
        stream = flow.stream(direction).data
        raw = bytes(stream[message.offset : message.offset + message.length])
        side = C2S if direction is FlowDirection.CLIENT_TO_SERVER else S2C
        numbered.append((message.packet or 0, TraceFrame(side, raw)))
    for direction, side in (
        (FlowDirection.CLIENT_TO_SERVER, C2S),
        (FlowDirection.SERVER_TO_CLIENT, S2C),
    ):
        closed_at = flow.stream(direction).closed_at
        if closed_at is not None:  # after the frames its packet completes (FIN may carry data)
            numbered.append((closed_at, TraceFrame(side, close=True)))
    numbered.sort(key=lambda item: (item[0], item[1].close))  # stable: wire order kept
    return [frame for _packet, frame in numbered]


def libvirt_traces(fixtures: Path) -> dict[str, Trace]:
    import json

    meta = {item["capture"]: item for item in json.loads((fixtures / "captures.json").read_text())}
    out: dict[str, Trace] = {}
    for fixture, name, cases, direction in LIBVIRT_FIXTURES:
        info = meta[f"{fixture}.pcapng"]
        frames = capture_trace(fixtures / f"{fixture}.pcapng", int(info["port"]))
        command = [Path(word).name if word.startswith("/") else word for word in info["virsh"]]
        out[name] = Trace(
            frames,
            programs=["libvirt_remote"],
            variant="v2" if direction else None,
            direction=direction,
            description=f"real virsh 9.0 <-> libvirtd 9.0: virsh {' '.join(command)}",
            cases=cases,
            extra={"source": f"tests/fixtures/libvirt/{fixture}.pcapng", "driver": info["driver"]},
        )
        if name in LIBVIRT_OWN_POOL:
            out[name].extra.update(replay=False, replay_note=POOL_UUID_NOTE)
    return out


def generate(out: Path, fixtures: Path | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="xdrstream-traces-") as tmp:
        work = Path(tmp)
        with ServerThread(RestoreServer(f"unix:{work / 'server.sock'}")) as server:
            traces = client_traces(server.address, work)
            traces.update(case_traces(server.address, work))
    traces.update(client_case_traces())
    if fixtures is not None and (fixtures / "captures.json").exists():
        traces.update(libvirt_traces(fixtures))
    for name, trace in sorted(traces.items()):
        path = out / f"{name}.jsonl"
        write(path, trace)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--out", type=Path, default=here / "traces")
    parser.add_argument(
        "--libvirt-fixtures", type=Path, default=here.parents[1] / "tests" / "fixtures" / "libvirt"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out, args.libvirt_fixtures):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
