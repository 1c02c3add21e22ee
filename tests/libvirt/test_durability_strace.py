"""Under strace -f: real virsh uploads to ``xdrstream serve --libvirt-storage``, and the
volume's fsync comes after the upload's REPLY and before the confirming STREAM/OK
(issue 15 part 4, spec.md §7.1.4)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from libvirt_helpers import make_random_file, virsh
from realpeers import require

from xdrstream.libvirt import remote

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(90)]

# strace pads the pid column to five characters: one space after a 5-digit pid, more after
# a shorter one
_SEND = re.compile(r'^(\d+) +sendmsg\(\d+, \{.*?iov_base="((?:\\x[0-9a-f]{2})+)"')


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_virsh_upload_is_fsynced_before_its_confirmation(tmp_path: Path) -> None:
    require("strace", "virsh")
    images = tmp_path / "images"
    images.mkdir()
    (images / "vol1").write_bytes(b"")
    source = tmp_path / "in"
    make_random_file(source, 300_000)
    sock, log = tmp_path / "sock", tmp_path / "strace.log"
    serve = [sys.executable, "-c", "import sys; from xdrstream.cli import main; sys.exit(main())"]
    command = [shutil.which("strace") or "strace", "-f", "-qq", "-xx", "-s", "28"]
    command += ["-e", "trace=fsync,fdatasync,sendmsg", "-o", str(log)]
    command += [*serve, "serve", "--libvirt-storage", str(images), "--listen", f"unix:{sock}"]
    tracer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert tracer.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        uri = f"qemu+unix:///session?socket={sock}"
        done = virsh(uri, "vol-upload", "--pool", "images", "vol1", str(source))
        assert done.returncode == 0, done.stderr
    finally:
        for child in _children(tracer.pid):
            os.kill(child, signal.SIGTERM)  # the server; strace ends with it
        try:
            tracer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    events: list[str] = []
    for line in log.read_text().splitlines():
        if " fsync(" in line or " fdatasync(" in line:
            events.append("fsync")
        elif match := _SEND.match(line):
            header = bytes.fromhex(match.group(2).replace("\\x", ""))
            if (
                len(header) >= 28
                and int.from_bytes(header[12:16], "big") == remote.STORAGE_VOL_UPLOAD
            ):
                events.append(f"send type={header[19]} status={header[27]}")
    reply, confirm = "send type=1 status=0", "send type=3 status=0"
    assert reply in events and confirm in events, events
    between = events[events.index(reply) : events.index(confirm)]
    assert "fsync" in between, events
