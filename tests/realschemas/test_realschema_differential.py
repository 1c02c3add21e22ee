"""Issues 10 and 17: our codecs of real ``.x`` files against C rpcgen + libtirpc, built at
test time from the ORIGINAL files (tests/rpcgen_oracle.py's schema driver; the constants
the files take from C headers given to gcc as -D, read from the same source trees).

Both directions, per type, each through one C process:
- ours to C: 1000 values of the project's generators (``strategy_for`` and ``random_value``,
  see :func:`draw_values`); libtirpc decodes our encoding with xdr_T (consuming every byte)
  and encodes its C value again; those bytes must be ours, byte for byte, and we decode
  them back to the value we started from;
- C to us: 1000 values libtirpc makes itself (C fillers written from our type model by
  c_fillers.py, seeded), encoded by xdr_T; we decode each and encode the same bytes.

libvirt: 16 rich types of remote_protocol.x (typed parameters, job stats, all-domain stats,
migration parameters, security labels, guest info, events...); GlusterFS, NFS-Ganesha,
libnfs: 22 types, 16 of them using libtirpc's type names (uint64_t, u_quad_t, int64_t...).
Counts are printed at the end of the run.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

import pytest
import realschemas_report
from c_fillers import fillers
from hypothesis import HealthCheck, Phase, given, settings
from realschemas_catalogue import GANESHA, GLUSTERFS, LIBNFS, LIBVIRT, Unit, unit
from rpcgen_oracle import build_schema_driver, skip_without_c_toolchain

from xdrstream.codec import Schema
from xdrstream.fuzz.strategies import strategy_for
from xdrstream.fuzz.values import random_value

pytestmark = pytest.mark.real_peers

VALUES = 1000
HYPOTHESIS_SHARE = 20  # percent of the values drawn by strategy_for (see draw_values)
SEED = 20261207

TABLE = realschemas_report.table(
    "differential vs C rpcgen + libtirpc on real .x files (issues 10, 17)",
    ("type", "file", "libtirpc names", "our values", "result (both directions, byte-equal)"),
)

# (catalogue unit, types): a C driver is built per unit, over all its types.
TARGETS: list[tuple[Unit, tuple[str, ...]]] = [
    (
        unit(LIBVIRT, "src/remote/remote_protocol.x"),
        (
            "remote_typed_param",
            "remote_domain_get_job_stats_ret",
            "remote_connect_get_all_domain_stats_ret",
            "remote_domain_migrate_begin3_params_args",
            "remote_domain_get_security_label_ret",
            "remote_domain_get_security_label_list_ret",
            "remote_node_get_security_model_ret",
            "remote_domain_get_guest_info_ret",
            "remote_domain_event_callback_tunable_msg",
            "remote_domain_event_callback_job_completed_msg",
            "remote_domain_event_callback_lifecycle_msg",
            "remote_domain_event_graphics_msg",
            "remote_domain_interface_addresses_ret",
            "remote_domain_get_fsinfo_ret",
            "remote_node_get_cpu_stats_ret",
            "remote_error",
        ),
    ),
    (unit(GLUSTERFS, "rpc/xdr/src/glusterfs3-xdr.x"), ("gf_iatt", "gfs3_read_rsp")),
    (
        unit(GLUSTERFS, "rpc/xdr/src/glusterfs4-xdr.x"),
        ("gfx_iattx", "gfx_read_rsp", "gfx_dict", "gfx_read_req", "gfx_write_req", "gfx_lk_req"),
    ),
    (unit(GANESHA, "src/Protocols/XDR/nfs23.x"), ("fattr3", "READ3resok", "READDIR3resok")),
    (unit(GANESHA, "src/Protocols/XDR/nlm4.x"), ("nlm4_holder", "nlm4_lockargs")),
    (
        unit(GANESHA, "src/Protocols/XDR/nfsv41.x"),
        ("nfstime4", "fsid4", "EXCHANGE_ID4resok", "layoutreturn_file4"),
    ),
    (unit(LIBNFS, "nfs/nfs.x"), ("fattr3", "READ3resok", "entry3")),
    (unit(LIBNFS, "nlm/nlm.x"), ("NLM4_LOCKargs", "NLM4_TESTres")),
]

# libtirpc's type names (issue 17's table): rpcgen hands them to libtirpc's own routines.
LIBTIRPC_NAMES = frozenset(
    {
        *("uint32_t", "u_int32_t", "u_int", "int32_t", "uint64_t", "u_int64_t", "u_quad_t"),
        *("int64_t", "quad_t", "u_char", "u_short", "netobj", "authsys_parms"),
    }
)


def libtirpc_names(x_text: str, name: str, seen: set[str] | None = None) -> set[str]:
    """The libtirpc type names that type ``name`` of ``x_text`` uses, through the file's own
    typedefs, structs and unions (a name the file typedefs itself counts too: Ganesha's
    nlm4.x says ``typedef unsigned hyper uint64_t;``, its types still use the name)."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    body = re.search(rf"\b(?:struct|union)\s+{name}\b[^{{;]*\{{(.*?)\n\s*\}}", x_text, re.S)
    typedef = re.search(rf"^\s*typedef\s+([^;]*?)\b{name}\b[^;]*;", x_text, re.M)
    words = set(re.findall(r"[A-Za-z_]\w*", body.group(1) if body else ""))
    words |= set(re.findall(r"[A-Za-z_]\w*", typedef.group(1) if typedef else ""))
    found = words & LIBTIRPC_NAMES
    for word in words - LIBTIRPC_NAMES:
        found |= libtirpc_names(x_text, word, seen)
    return found


def has_nul(value: Any) -> bool:
    """libtirpc's strings end at NUL: a value holding one cannot come back from C."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(has_nul(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def draw_values(schema: Schema, name: str, count: int) -> tuple[list[Any], int]:
    """``count`` values of the type from the project's two value generators: the first
    HYPOTHESIS_SHARE of them from ``strategy_for`` (hypothesis: boundaries, every arm), the
    rest from ``xdrstream.fuzz.values.random_value`` (same rules, a plain random walk,
    ~100 times cheaper than a hypothesis example); returns them and the strategy_for count."""
    drawn = strategy_values(schema[name], count * HYPOTHESIS_SHARE // 100)
    by_strategy = len(drawn)
    rng = random.Random(f"{name}:{SEED}")
    xtype = schema.xtype(name)
    while len(drawn) < count:
        if not has_nul(value := random_value(schema, xtype, rng)):
            drawn.append(value)
    return drawn, by_strategy


def strategy_values(codec: Any, count: int) -> list[Any]:
    """``count`` NUL-free values of ``strategy_for(codec)``."""
    found: list[Any] = []

    @settings(
        max_examples=3 * count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy_for(codec))
    def collect(value: Any) -> None:
        if len(found) < count and not has_nul(value):
            found.append(value)

    collect()
    return found


@pytest.mark.parametrize(
    ("target", "types"), TARGETS, ids=[f"{u.project.name}:{u.label}" for u, _ in TARGETS]
)
def test_libtirpc_and_we_agree_byte_for_byte(
    target: Unit, types: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    skip_without_c_toolchain()
    schema = target.load()
    fill_source, unsupported = fillers(schema, list(types))
    assert not unsupported, f"no C filler for {unsupported}"
    driver = build_schema_driver(
        tmp_path_factory.mktemp("rpcgen"),
        target.paths(),
        types,
        target.constants(),
        (fill_source, types),
    )
    # C to us: values libtirpc fills (seeded) and encodes itself; we decode each and encode
    # the very same bytes.
    made_in_c: dict[str, set[bytes]] = {name: set() for name in types}
    records = driver.generate(SEED, VALUES)
    for name, theirs in records:
        value = schema[name].unpack(theirs)
        assert schema[name].pack(value) == theirs, f"{name}: C's value re-encodes differently"
        made_in_c[name].add(theirs)
    assert len(records) == VALUES * len(types)
    for name, distinct in made_in_c.items():  # the fillers really vary what they make
        assert len(distinct) > VALUES // 2, f"{name}: only {len(distinct)} distinct C values"
    for name in types:
        codec = schema[name]
        values, by_strategy = draw_values(schema, name, VALUES)
        assert len(values) == VALUES, f"{name}: only {len(values)} values drawn"
        ours = [codec.pack(v) for v in values]
        answers = driver.roundtrip([(name, data) for data in ours])
        for value, data, (status, consumed, theirs) in zip(values, ours, answers, strict=True):
            assert status == 0, f"libtirpc refuses our {name} ({status}): {data.hex()}"
            assert consumed == len(data), f"libtirpc read {consumed} of {len(data)} ({name})"
            assert theirs == data, f"libtirpc re-encodes our {name} differently"
            assert codec.unpack(theirs) == value, f"{name}: libtirpc's bytes decode differently"
        sizes = sorted(len(d) for d in ours)
        x_text = "\n".join(p.read_text() for p in target.paths())
        names = sorted(libtirpc_names(x_text, name)) if target.project is not LIBVIRT else []
        TABLE.rows[f"{target.label}:{name}"] = (
            name,
            f"{target.project.name} {target.name.rsplit('/', 1)[-1]}",
            ", ".join(names) or "-",
            f"{len(values)} ({by_strategy} strategy_for)",
            f"ours->C->us equal ({sizes[0]}..{sizes[-1]} B); {VALUES} C-made: equal",
        )


def test_the_nfs_projects_types_use_libtirpc_names() -> None:
    """Issue 17 asks for >= 10 types of GlusterFS/Ganesha/libnfs that use libtirpc's names."""
    using = [
        name
        for target, types in TARGETS
        if target.project is not LIBVIRT
        for name in types
        if libtirpc_names("\n".join(p.read_text() for p in target.paths()), name)
    ]
    assert len(using) >= 10, using
    differential = [r for k, r in TABLE.rows.items() if r[2] != "-"]
    TABLE.totals[:] = [
        f"{len(TABLE.rows)} types byte-equal both ways, {len(differential)} of them from "
        f"GlusterFS/NFS-Ganesha/libnfs using libtirpc's type names"
    ]
