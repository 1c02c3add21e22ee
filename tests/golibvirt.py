"""Build small go-libvirt clients (Go programs of our own) offline, once, for real-peer tests.

go-libvirt is the Go implementation of libvirt's remote protocol (Debian
``golang-github-digitalocean-go-libvirt-dev``); Debian's ``golang-go`` builds against its
packaged sources without a network (``GO111MODULE=off GOPATH=/usr/share/gocode``)::

    from golibvirt import build_go_client
    client = build_go_client(Path(__file__).parent / "golibvirt")   # a dir with main.go
    subprocess.run([str(client), ...])

The binary is cached by the SHA-256 of the program's ``.go`` files and the Go version
(``~/.cache/xdrstream/go``, or ``XDRSTREAM_GO_CACHE``), guarded by a file lock, so each
program is built once for all test sessions and processes. Where Go or go-libvirt is not
installed the calling test is skipped with the reason; a failed build is an error.

Import from tests as ``from golibvirt import ...`` (``tests`` is on pytest's pythonpath).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOPATH = Path("/usr/share/gocode")
GO_LIBVIRT = GOPATH / "src/github.com/digitalocean/go-libvirt"
BUILD_TIMEOUT = 300.0


def _cache_root() -> Path:
    root = os.environ.get("XDRSTREAM_GO_CACHE") or str(Path.home() / ".cache/xdrstream/go")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_go_client(program: Path) -> Path:
    """The built binary of the Go program in directory ``program`` (its ``*.go`` files)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (Debian golang-go)")
    if not GO_LIBVIRT.is_dir():
        pytest.skip(
            f"go-libvirt is not installed ({GO_LIBVIRT}: golang-github-digitalocean-go-libvirt-dev)"
        )
    sources = sorted(program.glob("*.go"))
    if not sources:
        raise FileNotFoundError(f"no .go files in {program}")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(version.encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    root = _cache_root()
    binary = root / f"{program.name}-{digest.hexdigest()[:16]}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": str(GOPATH),
            "GOCACHE": str(root / "build-cache"),
        }
        partial = binary.with_suffix(".partial")
        done = subprocess.run(
            [go, "build", "-o", str(partial), *(str(s) for s in sources)],
            cwd=program,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"go build of {program} failed:\n{done.stderr}")
        partial.rename(binary)
    return binary
