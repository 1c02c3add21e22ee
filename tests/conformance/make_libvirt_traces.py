"""Record the real-libvirt traces that make_traces cannot convert from the committed
captures: a dense ``virsh vol-upload`` and ``vol-download`` through the recording proxy.

    .venv/bin/python tests/conformance/make_libvirt_traces.py      # as root, ~5 s

A private libvirtd (tests/realpeers.py) gets a directory pool ``tpool`` with a raw volume
``vol1`` of 300000 bytes; virsh (talking TCP to the recording proxy in front of the daemon)
uploads the stub's synthetic stream of that size (seed 11) and downloads it again. The
traces are written to ``xdrstream/conformance/traces/libvirt-vol-{upload,download}.jsonl``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from realpeers import NOBODY, private_libvirtd  # noqa: E402

from xdrstream.conformance import recorder, replay  # noqa: E402
from xdrstream.conformance.trace import write  # noqa: E402
from xdrstream.endpoints.qemu_stub import synthetic_bytes  # noqa: E402
from xdrstream.transport import address as addresses  # noqa: E402

SIZE = 300_000
NAMES = ("libvirt-vol-upload", "libvirt-vol-download")


def main() -> int:
    data = synthetic_bytes(SIZE, 11)
    with private_libvirtd(tcp=True) as daemon:
        daemon.define_pool("tpool")
        daemon.virsh("vol-create-as", "tpool", "vol1", str(SIZE), "--format", "raw")
        work = daemon.shared_dir("data")
        source, copy = work / "image.bin", work / "copy.bin"
        source.write_bytes(data)
        os.chown(source, NOBODY, NOBODY)
        upstream = addresses.parse_address(f"tcp:127.0.0.1:{daemon.tcp_port}")
        commands = {
            "libvirt-vol-upload": ["vol-upload", "--pool", "tpool", "vol1", str(source)],
            "libvirt-vol-download": ["vol-download", "--pool", "tpool", "vol1", str(copy)],
        }
        for name, command in commands.items():
            listen = addresses.parse_address("tcp:127.0.0.1:0")
            with recorder.RecordingProxy(listen, upstream) as proxy:
                uri = f"qemu+tcp://127.0.0.1:{proxy.address.port}/session"
                subprocess.run(["virsh", "-q", "-c", uri, *command], check=True, timeout=60)
                sessions = proxy.wait(1, timeout=30)
            shown = [Path(w).name if w.startswith("/") else w for w in command]
            trace = recorder.to_trace(
                sessions,
                programs=["libvirt_remote"],
                description=f"real virsh <-> libvirtd through the recording proxy: virsh "
                f"{' '.join(shown)} ({SIZE} bytes)",
                cases=["7.3.1/6"],
                variant="v2",
                direction="upload" if "upload" in name else "download",
            )
            trace.extra["replay"] = False
            trace.extra["replay_note"] = "needs a libvirtd with pool tpool and volume vol1"
            write(replay.traces_dir() / f"{name}.jsonl", trace)
        if copy.read_bytes() != data:
            raise SystemExit("the downloaded volume differs from the uploaded file")
    for name in NAMES:
        print(replay.traces_dir() / f"{name}.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
