"""Issue 10: libvirt's own rpcgen test suite, run against our compiler. libvirt 11.3's
``scripts/rpcgen/tests`` (Debian trixie's source package; libvirt 9.0 predates it) has
``demo.x``, ``test_demo.c`` (one C value per case, encoded with libtirpc and compared with
a golden ``test_demo_<case>.bin``, or expected to fail) and the golden files. Every case is
read from test_demo.c itself (tests/realschemas/c_initializers.py); each one with a golden
file must pack to those bytes and unpack back to the value; each one libvirt expects to
fail must fail to encode here too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import realschemas_report
from c_initializers import Case, Converter, read_cases
from sources import debian_source

from xdrstream.codec import DecodeError, EncodeError, Schema, load_schema

pytestmark = pytest.mark.real_peers

TABLE = realschemas_report.table(
    "libvirt 11.3 scripts/rpcgen/tests/test_demo.c cases (issue 10)",
    ("case", "type", "expected", "result"),
)


# Cases that fail for a codec feature not yet there, as case -> pytest.mark.xfail(strict=True,
# raises=..., reason=...) (each a bug report to the codec). None today: test_enum_fixed_array
# (zero-filled enum elements) needed strict_enums=False, which has landed.
KNOWN_GAPS: dict[str, Any] = {}


def demo_dir() -> Path:
    return debian_source("libvirt", "trixie") / "scripts/rpcgen/tests"


@pytest.fixture(scope="module")
def schemas() -> tuple[Schema, Schema]:
    """demo.x strict (the default) and with strict_enums=False (libtirpc's reading)."""
    demo_x = demo_dir() / "demo.x"
    return load_schema(demo_x), load_schema(demo_x, strict_enums=False)


def cases() -> list[Any]:
    """The cases of test_demo.c; read at collection only if the tree is already cached
    (else one placeholder that fetches it, so collection never waits on the registry)."""
    from sources import cache_root

    cached = cache_root() / "libvirt-trixie" / ".complete"
    if not cached.exists():
        return [pytest.param(None, id="test_demo.c")]
    source = (cached.parent / "scripts/rpcgen/tests/test_demo.c").read_text()
    return [
        pytest.param(case, id=case.test, marks=KNOWN_GAPS.get(case.test, ()))
        for case in read_cases(source)
    ]


def all_cases() -> list[Case]:
    return read_cases((demo_dir() / "test_demo.c").read_text())


def run_case(case: Case, strict: Schema, lenient: Schema) -> str:
    """Checks one case; returns what the table says about it."""
    converter = Converter(strict, case.locals)
    value = converter.convert(strict.xtype(case.type_name), case.value)
    if case.fail:
        for schema in (strict, lenient):
            with pytest.raises(EncodeError):
                schema[case.type_name].pack(value)
        return "encode refused, as libvirt expects"
    golden = (demo_dir() / f"test_demo_{case.golden}.bin").read_bytes()
    # A zero-filled enum array member (0 is no TestEnum) is libtirpc's reading: it takes the
    # lenient schema, and the strict one must refuse it both ways.
    schema = lenient if converter.undeclared_enums else strict
    if schema is lenient:  # the value in the lenient schema's own classes
        value = Converter(lenient, case.locals).convert(lenient.xtype(case.type_name), case.value)
    codec = schema[case.type_name]
    assert codec.pack(value) == golden, f"{case.test}: our bytes differ from the golden file"
    assert codec.unpack(golden) == value, f"{case.test}: the golden bytes decode differently"
    if converter.undeclared_enums:
        with pytest.raises(EncodeError):
            strict[case.type_name].pack(converter.convert(strict.xtype(case.type_name), case.value))
        with pytest.raises(DecodeError):
            strict[case.type_name].unpack(golden)
        return f"{len(golden)} bytes equal both ways (strict_enums=False; strict refuses)"
    return f"{len(golden)} bytes equal both ways"


@pytest.mark.parametrize("case", cases())
def test_libvirt_demo_case(case: Case | None, schemas: tuple[Schema, Schema]) -> None:
    if case is not None:
        record(case, schemas)
        return
    # Collected before the tree was fetched: all cases here, known gaps checked to fail.
    gaps = []
    for one in all_cases():
        mark = KNOWN_GAPS.get(one.test)
        if mark is None:
            record(one, schemas)
            continue
        try:
            record(one, schemas)
        except mark.kwargs["raises"]:
            gaps.append(mark.kwargs["reason"])
        else:
            pytest.fail(f"{one.test} passes now: remove it from KNOWN_GAPS")
    if gaps:
        pytest.xfail("; ".join(gaps))


def record(case: Case, schemas: tuple[Schema, Schema]) -> None:
    expected = "fails" if case.fail else f"test_demo_{case.golden}.bin"
    TABLE.rows[case.test] = (case.test, case.type_name, expected, "FAILED")
    TABLE.rows[case.test] = (case.test, case.type_name, expected, run_case(case, *schemas))


def test_every_golden_file_has_a_case_and_the_totals_are_reported() -> None:
    found = all_cases()
    golden = {p.name for p in demo_dir().glob("test_demo_*.bin")}
    with_golden = [c for c in found if not c.fail]
    assert {f"test_demo_{c.golden}.bin" for c in with_golden} == golden
    assert len(found) == len(with_golden) + sum(c.fail for c in found) >= 40
    passed = [r for r in TABLE.rows.values() if r[3] != "FAILED"]
    TABLE.totals[:] = [
        f"{sum(r[2] != 'fails' for r in passed)}/{len(with_golden)} cases with a golden file "
        f"pack to it and unpack back; {sum(r[2] == 'fails' for r in passed)}/"
        f"{sum(c.fail for c in found)} cases libvirt expects to fail, fail"
    ]
