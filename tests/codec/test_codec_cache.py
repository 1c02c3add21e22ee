"""The on-disk cache of generated codec modules (xdrstream.codec's "Cache"): a schema
compiled before is loaded without parsing, generating or compiling it again, behaves the
same (values, errors with exact paths and offsets, programs, tracebacks into the generated
source), and the cache is keyed, bounded, atomic and optional."""

from __future__ import annotations

import linecache
import traceback
from pathlib import Path
from typing import Any

import pytest

import xdrstream.codec as codec
from xdrstream.codec import DecodeError, compile_schema

SCHEMA = """
struct point { int x; unsigned hyper y; };
union shape switch (int kind) { case 1: point p; case 2: string name<8>; default: void; };
struct msg { shape items<4>; };
program DEMO { version DEMO_V1 { msg ECHO(msg) = 1; void PING(void) = 2; } = 1; } = 0x20000001;
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("XDRSTREAM_NO_CODEC_CACHE", raising=False)
    return tmp_path / "xdrstream" / "codec"


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.bin")) if cache.exists() else []


def forbid_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the schema was generated again")

    monkeypatch.setattr(codec, "generate", refuse)
    monkeypatch.setattr(codec, "build_model", refuse)


def test_a_second_compile_loads_the_cached_module(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = compile_schema(SCHEMA, filename="demo.x")
    (entry,) = entries(cache)
    forbid_generation(monkeypatch)
    second = compile_schema(SCHEMA, filename="demo.x")
    assert second._model is None  # not parsed: the model waits until something needs it
    M, S, P = second["msg"], second["shape"], second["point"]
    value = M(items=[S(1, P(x=-1, y=2**64 - 1)), S(2, "ab"), S(9)])
    data = M.pack(value)
    assert M.unpack(data) == value
    assert first["msg"].unpack(data) == first["msg"](
        items=[
            first["shape"](1, first["point"](x=-1, y=2**64 - 1)),
            first["shape"](2, "ab"),
            first["shape"](9),
        ]
    )
    # Errors still name the path and offset (the model is rebuilt for the explanation).
    bad = data[:-1]
    with pytest.raises(DecodeError) as err:
        M.unpack(bad)
    assert "items[2]" in err.value.path and err.value.offset is not None
    with pytest.raises(DecodeError) as fresh:
        first["msg"].unpack(bad)
    assert (err.value.path, err.value.offset, str(err.value)) == (
        fresh.value.path,
        fresh.value.offset,
        str(fresh.value),
    )
    # Programs come from the facts the generator wrote, the same as from the model.
    assert second.programs == first.programs
    echo = second.programs["DEMO"].versions[1].procedures[1]
    assert echo.arg is M and echo.result is M and echo.arg_type == "msg"
    assert second.programs["DEMO"].versions[1].procedures[2].arg is None
    assert dict(second.constants) == dict(first.constants)
    assert second.source == first.source
    assert entries(cache) == [entry]


def test_tracebacks_show_the_cached_generated_source(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compile_schema(SCHEMA, filename="demo.x")
    linecache.clearcache()  # as in a new process
    forbid_generation(monkeypatch)
    schema = compile_schema(SCHEMA, filename="demo.x")
    pack_fn = schema._ns["p_point"]
    filename = pack_fn.__code__.co_filename
    assert filename.endswith("demo.x>")
    assert "".join(linecache.getlines(filename)) == schema.source
    try:
        pack_fn(object(), [])
    except AttributeError:
        text = traceback.format_exc()
    assert filename in text and ".pack(v.x, v.y)" in text


def test_text_options_and_depth_are_part_of_the_key(cache: Path) -> None:
    compile_schema(SCHEMA, filename="demo.x")
    compile_schema(SCHEMA, filename="demo.x", lenient=True)
    compile_schema(SCHEMA, filename="demo.x", max_depth=7)
    compile_schema(SCHEMA + "const N = 1;", filename="demo.x")
    assert len(entries(cache)) == 4
    lenient = compile_schema(SCHEMA, filename="demo.x", lenient=True)
    assert lenient.model.lenient and lenient.max_depth == 200


def test_a_corrupt_or_foreign_entry_is_replaced(cache: Path) -> None:
    compile_schema(SCHEMA, filename="demo.x")
    (entry,) = entries(cache)
    for junk in (b"", b"\x00garbage", entry.read_bytes()[:100]):
        entry.write_bytes(junk)
        schema = compile_schema(SCHEMA, filename="demo.x")
        assert schema["point"].unpack(schema["point"].pack(schema["point"](x=1, y=2))).y == 2
        assert codec._cache_load(entry) is not None  # rewritten whole


def test_the_cache_is_bounded(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "CACHE_ENTRIES", 3)
    for n in range(5):
        compile_schema(f"const N{n} = {n};", filename="n.x")
    assert len(entries(cache)) == 3
    assert not list(cache.glob("*.tmp"))  # atomic writes leave no temporary file


def test_it_can_be_turned_off_and_an_unwritable_cache_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDRSTREAM_NO_CODEC_CACHE", "1")
    compile_schema(SCHEMA, filename="demo.x")
    assert not cache.exists()
    monkeypatch.delenv("XDRSTREAM_NO_CODEC_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    schema = compile_schema(SCHEMA, filename="demo.x")
    assert schema["point"].pack(schema["point"](x=1, y=2)) == bytes.fromhex(
        "00000001" + "0000000000000002"
    )


def test_an_entry_of_another_user_is_not_run(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compile_schema(SCHEMA, filename="demo.x")
    (entry,) = entries(cache)
    assert codec._cache_load(entry) is not None
    monkeypatch.setattr(codec.os, "getuid", lambda: entry.stat().st_uid + 1)
    assert codec._cache_load(entry) is None
    generated = []
    real = codec.generate
    monkeypatch.setattr(codec, "generate", lambda *a, **k: generated.append(1) or real(*a, **k))
    schema = compile_schema(SCHEMA, filename="demo.x")
    assert generated == [1] and schema["point"](x=1, y=2).y == 2


def test_an_entry_under_another_key_or_writable_by_others_is_not_run(cache: Path) -> None:
    compile_schema(SCHEMA, filename="demo.x")
    compile_schema(SCHEMA + "const N = 1;", filename="demo.x")
    first, second = entries(cache)
    assert codec._cache_load(first) is not None
    first.write_bytes(second.read_bytes())  # the other schema's code under this key
    assert codec._cache_load(first) is None
    second.chmod(0o622)
    assert codec._cache_load(second) is None


def test_a_written_module_knows_its_types_bounds_without_its_model() -> None:
    """max_size answers from the generated module's table: a cached or written schema
    rebuilds no model for the engine's call bounds (§3.6), and the table agrees with the
    model's own computation for every type, bounded or not."""
    from xdrstream.codec import generate_source
    from xdrstream.codec.model import max_size

    text = (
        "struct pair { int a; hyper b; };\n"
        "struct named { string name<16>; pair p; opaque id[5]; };\n"
        "struct open { string any<>; };\n"
        "struct node { int v; node *next; };\n"
        "union u switch (int k) { case 1: pair p; case 2: void; default: int x; };\n"
    )
    namespace: dict[str, object] = {}
    exec(compile(generate_source(text, "bounds.x"), "bounds.x", "exec"), namespace)
    schema: Any = namespace["SCHEMA"]
    sizes = {name: schema.max_size(name) for name in ("pair", "named", "open", "node", "u")}
    assert schema._model is None  # answered from the table
    assert sizes == {"pair": 12, "named": 4 + 16 + 12 + 8, "open": None, "node": None, "u": 16}
    assert sizes == {name: max_size(schema.xtype(name)) for name in sizes}
