"""Schema exactness across libvirt's whole remote program (issue 16 part 2).

    xdrstream conformance exactness --connect unix:SOCK --libvirt-schemas TREE \\
        [--uri test:///default] [--json FILE]

Every procedure that is safe to call on the target (getters, lists, lookups, XML dumps,
capabilities, node and domain info, event registrations...) is called with valid
arguments, and the bytes of each reply must decode *exactly* per libvirt's own ``.x``
(:func:`xdrstream.libvirt.protocol.load`, strict codec: no trailing bytes, every enum value
declared, every bool 0 or 1, every bound respected; spec.md §4.4, §11.3).  The objects the
arguments name (a domain, a pool, a volume, a network...) are the target's own, found
with its CONNECT_LIST_ALL_* calls first, and a snapshot the check makes on the first
domain (:data:`OWN_OBJECTS`) and removes after.

Each procedure gets one :class:`Outcome`:

* ``checked`` -- the daemon answered OK and the reply decoded exactly;
* ``mismatch`` -- the reply did not decode exactly (the detail says where: type path and
  byte offset);
* ``refused`` -- the daemon answered with an error reply (e.g. the test driver does not
  implement the procedure): its error body decoded, the result type was not exercised;
* ``left-out`` -- not called, with the reason.  :func:`plan` gives the reasons from the
  ``.x`` annotations where it can: an event (a MESSAGE from the daemon), a data stream
  (``@readstream``/``@writestream``), an ``@acl`` permission that changes state (anything
  but ``read``, ``getattr`` and ``search_*``, e.g. ``domain:write``, ``domain:start``),
  authentication the daemon does not use; then :data:`STATE_CHANGING_READS` (an ``@acl``
  read that still changes something) and, at run time, an object the target does not have.

``N procedures checked of M in the protocol`` counts ``checked``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdrstream.codec import model as m
from xdrstream.codec.errors import DecodeError
from xdrstream.libvirt.protocol import RemoteProcedure, RemoteProtocol
from xdrstream.protocol import Registry, Role
from xdrstream.transport import address as addresses
from xdrstream.transport.blocking import BlockingConnection, SocketChannel
from xdrstream.transport.errors import RemoteFailure, TransportError
from xdrstream.transport.options import Options

__all__ = [
    "OUTCOMES",
    "Outcome",
    "Report",
    "check",
    "plan",
]

OUTCOMES = ("checked", "mismatch", "refused", "left-out")

#: ``@acl`` permissions that only read (libvirt's access manager: ``read``, ``getattr``,
#: ``search_*``); a permission guarded by a flag (``domain:read_secure:VIR_DOMAIN_XML_SECURE``)
#: only applies when that flag is passed, and the check passes flags 0.
READ_PERMISSIONS = frozenset({"read", "getattr"})

#: Reads that libvirt guards with a write permission (they talk to the guest agent or
#: probe the host, and change nothing): called anyway.
GUARDED_READS = frozenset(
    {
        "CONNECT_GET_DOMAIN_CAPABILITIES",
        "CONNECT_IS_SECURE",
        "DOMAIN_GET_HOSTNAME",
        "DOMAIN_GET_TIME",
        "DOMAIN_GET_GUEST_VCPUS",
        "DOMAIN_GET_GUEST_INFO",
        "DOMAIN_GET_FSINFO",
        "DOMAIN_GET_VCPUS_FLAGS",
        "DOMAIN_INTERFACE_ADDRESSES",
        "DOMAIN_MIGRATE_GET_MAX_SPEED",
        "DOMAIN_MIGRATE_GET_MAX_DOWNTIME",
        "DOMAIN_MIGRATE_GET_COMPRESSION_CACHE",
        "DOMAIN_AUTHORIZED_SSH_KEYS_GET",
        "DOMAIN_SNAPSHOT_GET_XML_DESC",
        "DOMAIN_CHECKPOINT_GET_XML_DESC",
        "DOMAIN_MANAGED_SAVE_GET_XML_DESC",
        "SECRET_GET_VALUE",
    }
)

#: Procedures an ``@acl`` read permission guards that change state or the connection:
#: left out with the reason given.
STATE_CHANGING_READS: Mapping[str, str] = {
    "CONNECT_OPEN": "opens the connection: checked by the handshake, once",
    "DOMAIN_SET_SCHEDULER_PARAMETERS": "a setter (libvirt guards it with domain:read)",
}

#: Authentication procedures of a daemon that uses none (AUTH_LIST says "none").
AUTHENTICATION = frozenset({"AUTH_SASL_INIT", "AUTH_SASL_START", "AUTH_SASL_STEP", "AUTH_POLKIT"})

#: The connection's handshake and end, checked around the other calls.
HANDSHAKE = ("AUTH_LIST", "CONNECT_OPEN")
CLOSING = "CONNECT_CLOSE"

#: Object types of the remote program -> the list-all call that finds one on the target
#: and the field of its reply holding them.
OBJECTS: Mapping[str, tuple[str, str]] = {
    "remote_nonnull_domain": ("CONNECT_LIST_ALL_DOMAINS", "domains"),
    "remote_nonnull_network": ("CONNECT_LIST_ALL_NETWORKS", "nets"),
    "remote_nonnull_storage_pool": ("CONNECT_LIST_ALL_STORAGE_POOLS", "pools"),
    "remote_nonnull_storage_vol": ("STORAGE_POOL_LIST_ALL_VOLUMES", "vols"),
    "remote_nonnull_interface": ("CONNECT_LIST_ALL_INTERFACES", "ifaces"),
    "remote_nonnull_node_device": ("CONNECT_LIST_ALL_NODE_DEVICES", "devices"),
    "remote_nonnull_secret": ("CONNECT_LIST_ALL_SECRETS", "secrets"),
    "remote_nonnull_nwfilter": ("CONNECT_LIST_ALL_NWFILTERS", "filters"),
    "remote_nonnull_nwfilter_binding": ("CONNECT_LIST_ALL_NWFILTER_BINDINGS", "bindings"),
    "remote_nonnull_domain_snapshot": ("DOMAIN_LIST_ALL_SNAPSHOTS", "snapshots"),
    "remote_nonnull_domain_checkpoint": ("DOMAIN_LIST_ALL_CHECKPOINTS", "checkpoints"),
    "remote_nonnull_network_port": ("NETWORK_LIST_ALL_PORTS", "ports"),
}

#: Integer argument fields that ask for at most this many items (libvirt refuses 0 for
#: some and more than the .x bound for all): a small count every bound allows.
COUNT_FIELDS = frozenset(
    {"maxnames", "maxids", "need_results", "maxCells", "maxinfo", "maxerrors", "ncpus", "npages"}
)
COUNT = 16


@dataclass(frozen=True)
class Outcome:
    name: str
    number: int
    outcome: str  # one of OUTCOMES
    detail: str = ""


@dataclass
class Report:
    """The outcome of every procedure of the program, in number order."""

    origin: str
    target: str
    uri: str | None
    outcomes: list[Outcome]

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def checked(self) -> int:
        return self.count("checked")

    @property
    def total(self) -> int:
        return len(self.outcomes)

    def summary_line(self) -> str:
        parts = ", ".join(f"{self.count(o)} {o}" for o in OUTCOMES[1:])
        return f"{self.checked} procedures checked of {self.total} in the protocol ({parts})"

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": "xdrstream conformance exactness",
            "schema": self.origin,
            "target": self.target,
            "uri": self.uri,
            "summary": {o: self.count(o) for o in OUTCOMES},
            "procedures": [
                {"name": o.name, "number": o.number, "outcome": o.outcome, "detail": o.detail}
                for o in self.outcomes
            ],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- the plan
def _permissions(proc: RemoteProcedure) -> set[str]:
    """The unconditional ``@acl`` permissions (``object:perm``; a third part names the
    flag that makes the permission apply)."""
    out = set()
    for entry in proc.annotations.get("acl", "").split(","):
        parts = entry.strip().split(":")
        if len(parts) == 2:
            out.add(parts[1])
    return out


def plan(remote: RemoteProtocol) -> dict[str, str | None]:
    """Each procedure's name -> None (to be called) or why it is left out (from its
    annotations, see the module docstring)."""
    out: dict[str, str | None] = {}
    for proc in remote.by_number.values():
        perms = _permissions(proc)
        changing = sorted(
            p for p in perms if p not in READ_PERMISSIONS and not p.startswith("search_")
        )
        if proc.event:
            reason: str | None = "event: a MESSAGE the daemon sends, not a call"
        elif proc.stream is not None:
            what = "readstream" if "readstream" in proc.annotations else "writestream"
            reason = f"@{what}: a data stream (the stream cases of `conformance run`)"
        elif proc.name in AUTHENTICATION:
            reason = "authentication the daemon does not ask for (AUTH_LIST gives none)"
        elif proc.name in STATE_CHANGING_READS:
            reason = STATE_CHANGING_READS[proc.name]
        elif proc.name == CLOSING:
            reason = None
        elif changing and proc.name not in GUARDED_READS:
            reason = f"changes state (@acl {', '.join(changing)})"
        else:
            reason = None
        out[proc.name] = reason
    return out


# ---------------------------------------------------------------------------- arguments
class _Missing(Exception):
    """The target has no object the arguments need."""


class _Arguments:
    """Valid arguments of each procedure, from the target's own objects."""

    def __init__(self, remote: RemoteProtocol, uri: str | None) -> None:
        self.remote = remote
        self.uri = uri
        self.objects: dict[str, list[Any]] = {}
        self.results: dict[str, Any] = {}

    def object(self, type_name: str) -> Any:
        found = self.objects.get(type_name) or []
        if not found:
            raise _Missing(f"the target has no {type_name.removeprefix('remote_nonnull_')}")
        return found[0]

    def device(self, kind: str) -> str:
        """The target name of the domain's first ``disk`` or ``interface`` (its XML)."""
        xml = self.results.get("DOMAIN_GET_XML_DESC")
        found = re.search(rf"<{kind}\b.*?<target dev='([^']+)'", xml.xml if xml else "", re.S)
        if found is None:
            raise _Missing(f"the domain has no {kind}")
        return found.group(1)

    def value(self, t: m.XType, field: str, proc: RemoteProcedure) -> Any:
        if isinstance(t, m.Struct):
            if t.name in OBJECTS:
                return self.object(t.name)
            return {f.name: self.value(f.type, f.name, proc) for f in t.fields}
        if isinstance(t, m.Optional):
            return None
        if isinstance(t, m.Array):
            return [] if not t.fixed else [self.value(t.element, field, proc)] * t.size
        if isinstance(t, m.Opaque):
            return bytes(t.size if t.fixed else 0)
        if isinstance(t, m.String):
            return ""
        if isinstance(t, m.Enum):
            return min(t.members.values())
        if isinstance(t, m.Bool):
            return False
        if isinstance(t, m.Union_):
            arm = t.arms[0] if t.arms else t.default
            disc = arm.labels[0] if arm is not None and arm.labels else 0
            inner = None if arm is None or arm.type is None else self.value(arm.type, field, proc)
            return {t.discriminant: disc, "value": inner}
        if isinstance(t, m.Prim):
            if t.kind in ("float", "double"):
                return 0.0
            return COUNT if field in COUNT_FIELDS else 0
        return 0

    def build(self, proc: RemoteProcedure) -> Any:
        if proc.arg_type is None:
            return None
        t = self.remote.schema.xtype(proc.arg_type)
        fields: dict[str, Any] = self.value(t, "", proc)
        special = _SPECIAL.get(proc.name)
        if special is not None:
            fields.update(special(self))
        return self.remote.args(proc.number, fields)


def _name_of(kind: str, attribute: str = "name") -> Callable[[_Arguments], dict[str, Any]]:
    return lambda a: {"name": getattr(a.object(kind), attribute)}


def _uuid_of(kind: str) -> Callable[[_Arguments], dict[str, Any]]:
    return lambda a: {"uuid": a.object(kind).uuid}


_DOM, _NET, _POOL, _VOL = (
    "remote_nonnull_domain",
    "remote_nonnull_network",
    "remote_nonnull_storage_pool",
    "remote_nonnull_storage_vol",
)
_CPU_XML = "<cpu><arch>x86_64</arch><model>qemu64</model></cpu>"

#: Arguments a zero value cannot give (names and keys of the target's objects, XML).
_SPECIAL: Mapping[str, Callable[[_Arguments], dict[str, Any]]] = {
    "CONNECT_SUPPORTS_FEATURE": lambda a: {"feature": 1},
    "DOMAIN_LOOKUP_BY_NAME": _name_of(_DOM),
    "DOMAIN_LOOKUP_BY_UUID": _uuid_of(_DOM),
    "DOMAIN_LOOKUP_BY_ID": lambda a: {"id": a.object(_DOM).id},
    "NETWORK_LOOKUP_BY_NAME": _name_of(_NET),
    "NETWORK_LOOKUP_BY_UUID": _uuid_of(_NET),
    "STORAGE_POOL_LOOKUP_BY_NAME": _name_of(_POOL),
    "STORAGE_POOL_LOOKUP_BY_UUID": _uuid_of(_POOL),
    "STORAGE_POOL_LOOKUP_BY_TARGET_PATH": lambda a: {"path": a.results["pool_path"]},
    "STORAGE_VOL_LOOKUP_BY_NAME": lambda a: {
        "pool": a.object(_POOL),
        "name": a.object(_VOL).name,
    },
    "STORAGE_VOL_LOOKUP_BY_KEY": lambda a: {"key": a.object(_VOL).key},
    "STORAGE_VOL_LOOKUP_BY_PATH": lambda a: {"path": a.object(_VOL).key},
    "INTERFACE_LOOKUP_BY_NAME": _name_of("remote_nonnull_interface"),
    "INTERFACE_LOOKUP_BY_MAC_STRING": lambda a: {"mac": a.object("remote_nonnull_interface").mac},
    "NODE_DEVICE_LOOKUP_BY_NAME": _name_of("remote_nonnull_node_device"),
    "NODE_DEVICE_LOOKUP_SCSI_HOST_BY_WWN": lambda a: {
        "wwnn": "2000000012341234",
        "wwpn": "1000000012341234",
    },
    "NWFILTER_LOOKUP_BY_NAME": _name_of("remote_nonnull_nwfilter"),
    "NWFILTER_LOOKUP_BY_UUID": _uuid_of("remote_nonnull_nwfilter"),
    "NWFILTER_BINDING_LOOKUP_BY_PORT_DEV": _name_of("remote_nonnull_nwfilter_binding", "portdev"),
    "SECRET_LOOKUP_BY_UUID": _uuid_of("remote_nonnull_secret"),
    "SECRET_LOOKUP_BY_USAGE": lambda a: {
        "usageType": a.object("remote_nonnull_secret").usageType,
        "usageID": a.object("remote_nonnull_secret").usageID,
    },
    "NETWORK_PORT_LOOKUP_BY_UUID": lambda a: {
        "net": a.object(_NET),
        "uuid": a.object("remote_nonnull_network_port").uuid,
    },
    "DOMAIN_SNAPSHOT_LOOKUP_BY_NAME": lambda a: {
        "dom": a.object(_DOM),
        "name": a.object("remote_nonnull_domain_snapshot").name,
    },
    "DOMAIN_CHECKPOINT_LOOKUP_BY_NAME": lambda a: {
        "dom": a.object(_DOM),
        "name": a.object("remote_nonnull_domain_checkpoint").name,
    },
    "CONNECT_COMPARE_CPU": lambda a: {"xml": _CPU_XML},
    "CONNECT_BASELINE_CPU": lambda a: {"xmlCPUs": [_CPU_XML]},
    "CONNECT_COMPARE_HYPERVISOR_CPU": lambda a: {"xmlCPU": _CPU_XML},
    "CONNECT_BASELINE_HYPERVISOR_CPU": lambda a: {"xmlCPUs": [_CPU_XML]},
    "CONNECT_GET_CPU_MODEL_NAMES": lambda a: {"arch": "x86_64", "need_results": 1},
    "CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY": lambda a: {
        "callbackID": a.results["CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"].callbackID
    },
    "CONNECT_NETWORK_EVENT_DEREGISTER_ANY": lambda a: {
        "callbackID": a.results["CONNECT_NETWORK_EVENT_REGISTER_ANY"].callbackID
    },
    "CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY": lambda a: {
        "callbackID": a.results["CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY"].callbackID
    },
    "CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY": lambda a: {
        "callbackID": a.results["CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY"].callbackID
    },
    "CONNECT_SECRET_EVENT_DEREGISTER_ANY": lambda a: {
        "callbackID": a.results["CONNECT_SECRET_EVENT_REGISTER_ANY"].callbackID
    },
    "NODE_GET_CPU_STATS": lambda a: {"cpuNum": -1, "nparams": 0},
    "NODE_GET_MEMORY_STATS": lambda a: {"cellNum": -1, "nparams": 0},
    "NODE_GET_CELLS_FREE_MEMORY": lambda a: {"startCell": 0, "maxcells": 1},
    "NODE_GET_FREE_PAGES": lambda a: {"pages": [4], "startCell": 0, "cellCount": 1},
    "DOMAIN_GET_VCPUS": lambda a: {"dom": a.object(_DOM), "maxinfo": 1, "maplen": 1},
    "DOMAIN_GET_VCPU_PIN_INFO": lambda a: {"dom": a.object(_DOM), "ncpumaps": 1, "maplen": 1},
    "DOMAIN_GET_EMULATOR_PIN_INFO": lambda a: {"dom": a.object(_DOM), "maplen": 1},
    "DOMAIN_GET_CPU_STATS": lambda a: {"dom": a.object(_DOM), "start_cpu": -1, "ncpus": 1},
    "DOMAIN_GET_METADATA": lambda a: {"dom": a.object(_DOM), "type": 0},
    "DOMAIN_MEMORY_STATS": lambda a: {"dom": a.object(_DOM), "maxStats": COUNT},
    "DOMAIN_GET_VCPUS_FLAGS": lambda a: {"dom": a.object(_DOM), "flags": 0},
    "DOMAIN_GET_MESSAGES": lambda a: {"dom": a.object(_DOM), "flags": 0},
    "DOMAIN_GET_SCHEDULER_PARAMETERS": lambda a: {
        "dom": a.object(_DOM),
        "nparams": a.results["DOMAIN_GET_SCHEDULER_TYPE"].nparams,
    },
    "DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS": lambda a: {
        "dom": a.object(_DOM),
        "nparams": a.results["DOMAIN_GET_SCHEDULER_TYPE"].nparams,
    },
    "DOMAIN_BLOCK_STATS": lambda a: {"dom": a.object(_DOM), "path": a.device("disk")},
    "DOMAIN_BLOCK_STATS_FLAGS": lambda a: {"dom": a.object(_DOM), "path": a.device("disk")},
    "DOMAIN_GET_BLOCK_INFO": lambda a: {"dom": a.object(_DOM), "path": a.device("disk")},
    "DOMAIN_GET_BLOCK_IO_TUNE": lambda a: {"dom": a.object(_DOM), "disk": a.device("disk")},
    "DOMAIN_GET_BLOCK_JOB_INFO": lambda a: {"dom": a.object(_DOM), "path": a.device("disk")},
    "DOMAIN_INTERFACE_STATS": lambda a: {"dom": a.object(_DOM), "device": a.device("interface")},
    "DOMAIN_GET_INTERFACE_PARAMETERS": lambda a: {
        "dom": a.object(_DOM),
        "device": a.device("interface"),
    },
    **{
        name: _name_of("remote_nonnull_node_device")
        for name in (
            "NODE_DEVICE_GET_XML_DESC",
            "NODE_DEVICE_GET_PARENT",
            "NODE_DEVICE_NUM_OF_CAPS",
            "NODE_DEVICE_LIST_CAPS",
            "NODE_DEVICE_GET_AUTOSTART",
            "NODE_DEVICE_IS_PERSISTENT",
            "NODE_DEVICE_IS_ACTIVE",
        )
    },
}


# ---------------------------------------------------------------------------- the check
class _Session:
    """One connection to the daemon whose replies stay bytes, decoded here strictly."""

    def __init__(self, remote: RemoteProtocol, target: str, timeout: float) -> None:
        self.remote = remote
        address = addresses.parse_address(target)
        sock = addresses.connect(address, timeout)
        registry = Registry([remote.program_definition(raw_results=True)])
        options = Options(timeout=timeout, keepalive_interval=None)
        self.conn = BlockingConnection(
            SocketChannel(sock), Role.CLIENT, registry, options, str(address)
        )
        self.conn.start()

    def call(self, proc: RemoteProcedure, args: Any) -> bytes:
        body = self.conn.call(self.remote.program, self.remote.version, proc.number, args)
        return b"" if body is None else bytes(body)

    def close(self) -> None:
        self.conn.close()


def _decode(remote: RemoteProtocol, proc: RemoteProcedure, body: bytes) -> Any:
    """The reply's value, decoded exactly (raises DecodeError)."""
    if proc.result_type is None:
        if body:
            raise DecodeError(f"{len(body)} bytes in the reply of a void procedure", proc.name, 0)
        return None
    return remote.codec(proc.result_type).unpack(body)


def check(
    remote: RemoteProtocol,
    target: str,
    *,
    uri: str | None = "test:///default",
    timeout: float = 30.0,
    only: Iterable[str] = (),
) -> Report:
    """Call every procedure :func:`plan` keeps on ``target`` (an address: ``unix:PATH``,
    ``tcp:HOST:PORT``) with the driver ``uri`` open, and judge each reply's bytes.
    ``remote`` should be strict (``load(..., lenient=False)``, the default).  ``only``: just
    these procedures (names), the others reported ``left-out``."""
    reasons = plan(remote)
    wanted = {remote.procedure(n).name for n in only}
    if wanted:
        reasons = {
            n: (r if n in wanted else r or "not asked for (--only)") for n, r in reasons.items()
        }
    outcomes: dict[str, Outcome] = {}
    arguments = _Arguments(remote, uri)
    session = _Session(remote, target, timeout)

    def run(proc: RemoteProcedure, args: Any = None, build: bool = True) -> Any:
        if proc.name in outcomes:
            return arguments.results.get(proc.name)
        try:
            value_args = arguments.build(proc) if build else args
        except _Missing as exc:
            outcomes[proc.name] = Outcome(proc.name, proc.number, "left-out", str(exc))
            return None
        except KeyError as exc:
            outcomes[proc.name] = Outcome(
                proc.name, proc.number, "left-out", f"needs {exc.args[0]} (not found)"
            )
            return None
        try:
            body = session.call(proc, value_args)
        except RemoteFailure as failure:
            outcomes[proc.name] = Outcome(
                proc.name, proc.number, "refused", f"error {failure.code}: {failure.message}"
            )
            return None
        try:
            value = _decode(remote, proc, body)
        except DecodeError as exc:
            outcomes[proc.name] = Outcome(proc.name, proc.number, "mismatch", str(exc))
            return None
        outcomes[proc.name] = Outcome(proc.name, proc.number, "checked", f"{len(body)} bytes")
        arguments.results[proc.name] = value
        return value

    try:
        run(remote.procedure("AUTH_LIST"))
        opened = run(
            remote.procedure("CONNECT_OPEN"),
            remote.args("CONNECT_OPEN", name=uri, flags=0),
            build=False,
        )
        if outcomes["CONNECT_OPEN"].outcome != "checked" and opened is None:
            raise TransportError(f"CONNECT_OPEN {uri!r}: {outcomes['CONNECT_OPEN'].detail}")
        made: list[tuple[str, Any]] = []  # the check's own objects, removed after it
        try:
            _find_objects(remote, arguments, run, lambda dom: _make(remote, session, dom, made))
            for proc in remote.by_number.values():
                if reasons.get(proc.name) is None and proc.name != CLOSING:
                    run(proc)
        finally:
            _remove(remote, session, made)
        run(remote.procedure(CLOSING))
    finally:
        session.close()
    ordered = []
    for proc in remote.by_number.values():
        found = outcomes.get(proc.name)
        reason = reasons.get(proc.name)
        if found is None:
            found = Outcome(proc.name, proc.number, "left-out", reason or "not reached")
        ordered.append(found)
    return Report(remote.origin, target, uri, ordered)


#: What the check makes on the target's first domain so that the reads of a snapshot have
#: one (the test driver keeps it in memory), and the call removing it. (libvirtd 9.0's test
#: driver refuses a checkpoint of its domain: its reads stay left out for want of one.)
OWN_OBJECTS: Sequence[tuple[str, str, str, str]] = (
    ("DOMAIN_SNAPSHOT_CREATE_XML", "<domainsnapshot><name>{}</name></domainsnapshot>",
     "DOMAIN_SNAPSHOT_DELETE", "snap"),
)  # fmt: skip
OWN_NAME = "xdrstream-exactness"


def _make(remote: RemoteProtocol, session: _Session, dom: Any, made: list[tuple[str, Any]]) -> None:
    """Make :data:`OWN_OBJECTS` on ``dom``; one the target refuses is simply not there (its
    reads are then left out for want of an object)."""
    for create, xml, delete, field in OWN_OBJECTS:
        if create not in remote or delete not in remote:
            continue
        proc = remote.procedure(create)
        args = remote.args(create, dom=dom, xml_desc=xml.format(OWN_NAME), flags=0)
        try:
            body = session.call(proc, args)
            value = _decode(remote, proc, body)
        except (RemoteFailure, DecodeError):
            continue
        made.append((delete, remote.args(delete, {field: getattr(value, field), "flags": 0})))


def _remove(remote: RemoteProtocol, session: _Session, made: list[tuple[str, Any]]) -> None:
    for delete, args in reversed(made):
        with contextlib.suppress(RemoteFailure):  # gone already: nothing left to remove
            session.call(remote.procedure(delete), args)


def _find_objects(
    remote: RemoteProtocol,
    arguments: _Arguments,
    run: Callable[..., Any],
    make: Callable[[Any], None] = lambda dom: None,
) -> None:
    """The target's objects, by its list-all calls (themselves checked); ``make`` is given
    the first domain before the domain's own objects are listed."""
    order = [t for t in OBJECTS if t != "remote_nonnull_storage_vol"]
    order.insert(order.index(_POOL) + 1, _VOL)  # volumes need a pool
    for type_name in order:
        procedure, field = OBJECTS[type_name]
        if procedure not in remote:
            continue
        result = run(remote.procedure(procedure))
        found = list(getattr(result, field, None) or [])
        if type_name == _POOL and found:
            found.sort(key=lambda p: p.name)
        if type_name == _DOM:
            found.sort(key=lambda d: d.id < 0)  # a running domain first
        arguments.objects[type_name] = found
        if type_name == _DOM and found:
            run(remote.procedure("DOMAIN_GET_XML_DESC"))
            make(found[0])
        if type_name == _POOL and found:
            xml = run(remote.procedure("STORAGE_POOL_GET_XML_DESC"))
            if xml is not None:
                arguments.results["pool_path"] = _between(xml.xml, "<path>", "</path>")


def _between(text: str, start: str, end: str) -> str:
    rest = text.partition(start)[2]
    return rest.partition(end)[0] if rest else ""


def print_report(report: Report, out: Callable[[str], None] = print, verbose: bool = False) -> None:
    """The summary line, then every mismatch and (``verbose``) every other outcome."""
    out(report.summary_line())
    for item in report.outcomes:
        if item.outcome == "mismatch" or verbose:
            out(f"  {item.outcome:9} {item.number:4} {item.name}: {item.detail}")


def leave_out_table(remote: RemoteProtocol) -> list[tuple[str, int, str]]:
    """(name, number, reason) of every procedure :func:`plan` leaves out."""
    return [
        (name, remote.number(name), reason)
        for name, reason in plan(remote).items()
        if reason is not None
    ]


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return {o: sum(1 for x in outcomes if x.outcome == o) for o in OUTCOMES}


_RANK = {"mismatch": 3, "checked": 2, "refused": 1, "left-out": 0}


def merge(reports: Sequence[Report]) -> Report:
    """One report of several runs (one per driver URI) on the same program: a procedure's
    outcome is its worst mismatch, else checked on some URI, else refused, else left out;
    the detail names the URI it came from."""
    if not reports:
        raise ValueError("no reports to merge")
    merged: list[Outcome] = []
    for items in zip(*(r.outcomes for r in reports), strict=True):
        best_index = max(range(len(items)), key=lambda i: _RANK[items[i].outcome])
        best = items[best_index]
        where = reports[best_index].uri
        detail = best.detail if len(reports) == 1 else f"{where}: {best.detail}"
        merged.append(Outcome(best.name, best.number, best.outcome, detail))
    uris = ", ".join(str(r.uri) for r in reports)
    return Report(reports[0].origin, reports[0].target, uris, merged)
