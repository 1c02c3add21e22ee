"""Issues 10 and 17, "proven on real files": every ``.x`` file of libvirt 9.0, the rpcsvc
set, GlusterFS 10.3, NFS-Ganesha 4.3 and libnfs compiles as shipped, in its build's groups,
with only the ``-D`` constants this test reads from the same source tree's C headers; and
our verdict is C rpcgen's verdict on the same file. The table (file, package, types,
compile seconds, verdict) is printed at the end of the run."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import realschemas_report
from realschemas_catalogue import Unit, all_units

from xdrstream.codec import SchemaError

pytestmark = pytest.mark.real_peers

TABLE = realschemas_report.table(
    "real .x files: xdrstream compile vs C rpcgen (issues 10, 17)",
    ("file", "package", "types", "compile s", "verdict"),
)


def rpcgen(flag: str, x_file: Path, work: Path) -> str | None:
    """None if C rpcgen accepts the file for output ``flag`` (``-c``: the XDR routines,
    what our compiler makes; ``-h``: the C header), else its complaint. Run in the file's
    directory, as the projects' builds run it."""
    done = subprocess.run(
        ["rpcgen", flag, "-o", str(work / f"{x_file.stem}{flag}.out"), x_file.name],
        cwd=x_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines() or ["(no message)"]
    return lines[-1][-200:]  # rpcgen's verdict line: "nis.x, line 411: ..."


# Files rpcgen accepts and the compiler does not yet (each a bug report to the codec).
KNOWN_GAPS: dict[str, str] = {}


def units() -> list[Any]:
    marks = {
        name: pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)
        for name, reason in KNOWN_GAPS.items()
    }
    return [
        pytest.param(unit, id=unit.label, marks=[marks[unit.name]] if unit.name in marks else [])
        for unit in all_units()
    ]


@pytest.mark.parametrize("unit", units())
def test_compiles_as_shipped_like_rpcgen(unit: Unit, tmp_path: Path) -> None:
    if shutil.which("rpcgen") is None:
        pytest.skip("rpcgen not found (Debian: rpcsvc-proto)")
    paths = unit.paths()
    complaints = [c for p in paths if (c := rpcgen("-c", p, tmp_path))]
    rpcgen_ok, rpcgen_says = not complaints, "; ".join(complaints)
    header_complaint = rpcgen("-h", paths[-1], tmp_path)
    key = f"{unit.project.name}:{unit.label}"
    row = (unit.project.name + " " + unit.label, unit.package_version())
    if unit.out_of_scope is not None:
        TABLE.rows[key] = (*row, "-", "-", f"out of scope: {unit.out_of_scope}")
        assert rpcgen_ok, f"rpcgen refuses {unit.name}: {rpcgen_says}"
        return

    constants = unit.constants()
    started = time.perf_counter()
    try:
        schema = unit.load()
    except SchemaError as refused:
        TABLE.rows[key] = (*row, "-", "-", f"REFUSED ({refused})"[:150])
        assert not rpcgen_ok, f"rpcgen accepts {unit.name}, we refuse it: {refused}"
        return
    seconds = time.perf_counter() - started
    verdict = "compiles, like rpcgen" if rpcgen_ok else "COMPILES, rpcgen refuses"
    if constants:
        verdict += f" (-D: {len(constants)} from C headers)"
    if header_complaint:
        verdict += f"; rpcgen -h refuses its C header part: {header_complaint}"
    TABLE.rows[key] = (*row, str(len(schema)), f"{seconds:.2f}", verdict)
    assert rpcgen_ok, f"we compile {unit.name}, rpcgen refuses it: {rpcgen_says}"
    assert len(schema) > 0
