"""The C oracle of the differential tests: rpcgen's output for a ``.x`` file, linked with
libtirpc into a driver from tests/codec/c/, built at test time in the test's temp dir.

One driver process answers a whole batch of records (length-prefixed, over stdin/stdout:
see tests/codec/c/xdr_oracle.h), so thousands of values cost one process per type set.

- tests/codec/test_differential_rpcgen.py builds ``driver.c`` for its own rich.x
  (:func:`build_rich_driver`: roundtrip, describe, generate);
- tests/realschemas builds ``schema_driver.c`` for the types of real ``.x`` files
  (:func:`build_schema_driver`: roundtrip), with the constants the files take from their
  C headers given as ``-D`` and their ``%#include`` lines answered by empty headers.

Import from tests as ``from rpcgen_oracle import ...`` (``tests`` is on pytest's pythonpath).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

C_DIR = Path(__file__).parent / "codec" / "c"
TIMEOUT = 120


def missing_c_toolchain() -> str | None:
    for tool in ("rpcgen", "gcc", "pkg-config"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: rpcsvc-proto, gcc, pkg-config)"
    probe = subprocess.run(["pkg-config", "--exists", "libtirpc"], check=False)
    if probe.returncode != 0:
        return "libtirpc development files not found (Debian: libtirpc-dev)"
    return None


def skip_without_c_toolchain() -> None:
    reason = missing_c_toolchain()
    if reason is not None:
        pytest.skip(reason)


def run(cmd: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"


def pkg_config(flag: str) -> list[str]:
    out = subprocess.run(
        ["pkg-config", flag, "libtirpc"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


class CDriver:
    """The compiled C oracle; each call is one process over a batch of records."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _run(self, args: list[str], records: bytes = b"") -> bytes:
        proc = subprocess.run(
            [str(self.path), *args], input=records, capture_output=True, timeout=TIMEOUT
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    @staticmethod
    def _requests(items: list[tuple[str, bytes]]) -> bytes:
        out = bytearray()
        for name, data in items:
            out += struct.pack(">I", len(name)) + name.encode()
            out += struct.pack(">I", len(data)) + data
        return bytes(out)

    @staticmethod
    def _words_and_blobs(out: bytes, words: int) -> Iterator[tuple[tuple[int, ...], bytes]]:
        """Splits records of `words` u32 fields, the last one being a blob length."""
        pos = 0
        while pos < len(out):
            fields = struct.unpack_from(f">{words}I", out, pos)
            pos += 4 * words
            blob = out[pos : pos + fields[-1]]
            pos += fields[-1]
            yield fields[:-1], blob
        assert pos == len(out)

    def roundtrip(self, items: list[tuple[str, bytes]]) -> list[tuple[int, int, bytes]]:
        """(status, bytes consumed by xdr_T, re-encoding) per item; status 0 = success."""
        out = self._run(["roundtrip"], self._requests(items))
        results = [(f[0], f[1], blob) for f, blob in self._words_and_blobs(out, 3)]
        assert len(results) == len(items)
        return results

    def describe(self, items: list[tuple[str, bytes]]) -> list[dict[str, str]]:
        out = self._run(["describe"], self._requests(items))
        results = []
        for (status,), text in self._words_and_blobs(out, 2):
            assert status == 0, "libtirpc failed to decode a fixed value"
            lines = text.decode().split("\n")[:-1]  # one "key=value" line per field
            results.append(dict(line.split("=", 1) for line in lines))
        assert len(results) == len(items)
        return results

    def generate(self, seed: int, count: int) -> list[tuple[str, bytes]]:
        out = self._run(["generate", str(seed), str(count)])
        records = []
        pos = 0
        while pos < len(out):
            (n,) = struct.unpack_from(">I", out, pos)
            name = out[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", out, pos)
            records.append((name, out[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        return records


def build_rich_driver(work: Path, rich_x: Path) -> CDriver:
    """driver.c over rpcgen's output for tests/codec's rich.x."""
    shutil.copy(rich_x, work / "rich.x")
    for name in ("driver.c", "xdr_oracle.h"):
        shutil.copy(C_DIR / name, work / name)
    run(["rpcgen", "-h", "-o", "rich.h", "rich.x"], work)
    run(["rpcgen", "-c", "-o", "rich_xdr.c", "rich.x"], work)
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    # rpcgen's own output has unused-variable warnings; our driver must compile cleanly.
    run(["gcc", "-c", "-O1", "-w", *cflags, "rich_xdr.c"], work)
    run(["gcc", "-c", "-O1", "-Wall", "-Wextra", "-Werror", *cflags, "-I.", "driver.c"], work)
    run(["gcc", "-o", "driver", "driver.o", "rich_xdr.o", *libs], work)
    return CDriver(work / "driver")


def build_schema_driver(
    work: Path,
    x_files: Sequence[Path],
    types: Iterable[str],
    constants: Mapping[str, int] = {},
) -> CDriver:
    """schema_driver.c over rpcgen's output for ``x_files`` (as shipped, each one compiled
    by rpcgen in its own directory, like the projects' builds), exercising ``types``.

    ``constants`` are given to the C compiler as ``-D``; the headers named by the files'
    ``%#include "..."`` / ``<...>`` lines that the system lacks are answered by empty files
    (they hold the projects' C declarations, not wire types)."""
    stubs = work / "stub"
    stubs.mkdir(exist_ok=True)
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    defines = [f"-D{name}={value}" for name, value in constants.items()]
    headers, objects = [], []
    for x_file in x_files:
        stem = x_file.stem
        header, source = work / f"{stem}.h", work / f"{stem}_xdr.c"
        run(["rpcgen", "-h", "-o", str(header), x_file.name], x_file.parent)
        run(["rpcgen", "-c", "-o", str(source), x_file.name], x_file.parent)
        _stub_missing_includes(x_file, stubs, {h.name for h in work.glob("*.h")})
        run(["gcc", "-c", "-O1", "-w", *cflags, *defines, f"-I{stubs}", "-I.",
             *(f for h in headers for f in ("-include", str(h))),
             "-o", f"{stem}_xdr.o", source.name], work)  # fmt: skip
        headers.append(header)
        objects.append(f"{stem}_xdr.o")
    (work / "types.inc").write_text("".join(f"TYPE({name})\n" for name in types))
    for name in ("schema_driver.c", "xdr_oracle.h"):
        shutil.copy(C_DIR / name, work / name)
    run(["gcc", "-c", "-O1", "-Wall", "-Werror", "-Wno-unused-function", *cflags, *defines,
         f"-I{stubs}", "-I.", *(f for h in headers for f in ("-include", str(h))),
         "schema_driver.c"], work)  # fmt: skip
    run(["gcc", "-o", "schema_driver", "schema_driver.o", *objects, *libs], work)
    return CDriver(work / "schema_driver")


def _stub_missing_includes(x_file: Path, stubs: Path, generated: set[str]) -> None:
    text = x_file.read_text(encoding="utf-8", errors="replace")
    for name in re.findall(r'^%\s*#\s*include\s*[<"]([^>"]+)[>"]', text, re.M):
        if name.startswith("rpc/") or name in generated or Path(name).name in generated:
            continue  # libtirpc's own, or another file's rpcgen header
        if Path("/usr/include", name).exists():
            continue
        stub = stubs / name
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.touch()
