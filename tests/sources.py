"""Real source trees from Debian's package registry, fetched at test time.

Real schemas (libvirt's ``.x`` files, GlusterFS's, NFS-Ganesha's, libnfs's) are never copied
into this repository: tests ask for a source package by name and Debian release, and this
module fetches it with ``apt-get source`` through a private apt configuration (its own
``deb-src`` lines, lists and cache), so the machine's apt setup is neither needed nor touched.

    from sources import debian_source
    tree = debian_source("libvirt", "bookworm")      # -> Path of the unpacked tree
    remote_x = tree / "src/remote/remote_protocol.x"

Trees are unpacked once into a cache shared by test runs and processes (``XDRSTREAM_SOURCES``,
default ``~/.cache/xdrstream/sources``), guarded by a file lock. Where the registry cannot be
reached (or ``apt-get``/``dpkg-source`` are absent) the calling test is skipped with the
reason; any other failure is an error. Outside pytest (benchmarks), ``fetch_debian_source``
raises :class:`SourceUnavailable` instead of skipping.

A mirror may lack some files of a source package (a Debian revision's ``.dsc`` or
``.debian.tar.xz`` answer 404 while the upstream tarball is there). The ``.x`` files and C
headers the tests read are upstream's, so ``debian_source`` then falls back to the upstream
tarball alone (``apt-get source --tar-only``, checksummed by apt like the rest), unpacked
without Debian's patches; ``debian_tree_kind(tree)`` says which of the two a tree is.

Import from tests as ``from sources import ...`` (``tests`` is on pytest's pythonpath).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
RELEASES = ("bookworm", "trixie")
FETCH_TIMEOUT = 600.0


class SourceUnavailable(Exception):
    """The registry, or the programs that fetch from it, cannot be had here (a skip reason)."""


def cache_root() -> Path:
    root = os.environ.get("XDRSTREAM_SOURCES") or str(Path.home() / ".cache/xdrstream/sources")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_options(root: Path) -> list[str]:
    apt = root / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    lines = [f"deb-src [signed-by={KEYRING}] {MIRROR} {release} main" for release in RELEASES]
    sources.write_text("\n".join(lines) + "\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


class _NotFound(Exception):
    """The mirror answered 404 for a file of the package."""


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(
            f"{what}: the package registry did not answer in {FETCH_TIMEOUT:.0f} s"
        ) from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        if "404  Not Found" in output:
            raise _NotFound(output[-300:])
        unreachable = ("Could not resolve", "Failed to fetch", "Temporary failure", "timed out")
        if any(marker in output for marker in unreachable):
            raise SourceUnavailable(
                f"{what}: the package registry cannot be reached: {output[-300:]}"
            )
        raise RuntimeError(f"{what} failed ({done.returncode}): {output[-2000:]}")


def debian_source(package: str, release: str = "bookworm") -> Path:
    """The unpacked source tree of ``package`` in ``release``; skips the test if unavailable."""
    import pytest

    try:
        return fetch_debian_source(package, release)
    except SourceUnavailable as exc:
        pytest.skip(str(exc))


def fetch_debian_source(package: str, release: str = "bookworm") -> Path:
    """The unpacked source tree of Debian source package ``package`` in ``release``."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, not {release!r}")
    for program in ("apt-get", "dpkg-source"):
        if shutil.which(program) is None:
            raise SourceUnavailable(f"not installed: {program} (Debian packages apt, dpkg-dev)")
    root = cache_root()
    tree = root / f"{package}-{release}"
    with _locked(root):
        if (tree / ".complete").exists():
            return tree
        options = _apt_options(root)
        _run(["apt-get", *options, "-q", "update"], root, "apt-get update (deb-src)")
        download = root / f".download-{package}-{release}"
        what = f"apt-get source {package}/{release}"
        try:
            marker = _fetch_debian(options, package, release, download, tree, what)
        except _NotFound as missing:
            try:
                marker = _fetch_upstream(options, package, release, download, tree, what)
            except _NotFound:
                pytest.skip(f"{what}: the mirror lacks even the upstream tarball: {missing}")
        shutil.rmtree(download, ignore_errors=True)
        (tree / ".complete").write_text(marker + "\n")
    return tree


def debian_tree_kind(tree: Path) -> str:
    """``"debian"`` (the whole source package, patched) or ``"upstream"`` (tarball only)."""
    return "upstream" if (tree / ".complete").read_text().startswith("upstream ") else "debian"


def _fresh(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()


def _fetch_debian(
    options: list[str], package: str, release: str, download: Path, tree: Path, what: str
) -> str:
    _fresh(download)
    _run(["apt-get", *options, "-q", "source", "--download-only", f"{package}/{release}"],
         download, what)  # fmt: skip
    (dsc,) = download.glob("*.dsc")
    shutil.rmtree(tree, ignore_errors=True)
    _run(["dpkg-source", "--no-check", "-x", str(dsc), str(tree)], download,
         f"dpkg-source -x {dsc.name}")  # fmt: skip
    return dsc.name


def _fetch_upstream(
    options: list[str], package: str, release: str, download: Path, tree: Path, what: str
) -> str:
    _fresh(download)
    _run(["apt-get", *options, "-q", "source", "--download-only", "--tar-only",
          f"{package}/{release}"], download, f"{what} --tar-only")  # fmt: skip
    (tarball,) = download.glob("*.orig.tar.*")
    _fresh(tree)
    # Upstream tarballs hold one top directory (libvirt-11.3.0/ ...): strip it.
    _run(["tar", "-xf", str(tarball), "-C", str(tree), "--strip-components=1"], download,
         f"tar -xf {tarball.name}")  # fmt: skip
    return f"upstream {tarball.name}"
