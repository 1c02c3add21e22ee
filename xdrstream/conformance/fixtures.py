"""What the libvirt cases need, made on the target for one run and removed after it.

Against libvirt's remote program the suite does not rely on what a user prepared: through
the storage and domain procedures of the target itself it makes

* a directory pool ``xdrstream-conformance-HEX`` whose directory is a new temporary
  directory on the target's host (``STORAGE_POOL_DEFINE_XML`` + ``BUILD`` + ``CREATE``;
  after the run ``DESTROY`` + ``DELETE`` remove the directory and ``UNDEFINE`` the pool),
  or, with ``--libvirt-pool``, uses that pool and only adds volumes to it;
* a fresh raw volume with allocation 0 for each case that asks (``STORAGE_VOL_CREATE_XML``,
  deleted after the run), so what a case finds in a volume is zeros and holes, whatever the
  given volume holds;
* a transient domain on the test driver (``DOMAIN_CREATE_XML``, destroyed after the run).
  The test driver's ``test:///default`` state lives while one connection to it is open, so
  the fixtures keep a connection open for the whole run.

What cannot be made is recorded with libvirt's own error message; a case that needs it
skips with that reason (:meth:`LibvirtFixtures.volume`, :meth:`LibvirtFixtures.domain`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from xdrstream.conformance.peer import Closed, Peer, Violation
from xdrstream.protocol import schemas
from xdrstream.protocol.events import Call, ErrorReply, Reply

__all__ = ["FixtureError", "LibvirtFixtures", "libvirt_call"]

_LV = schemas.load("libvirt_remote")
PROG = int(_LV.constants["REMOTE_PROGRAM"])
#: Capacity of each volume the suite makes: room for the largest transfer of a case (48 MiB
#: in 8.2/1); the file stays sparse (allocation 0) until a case writes to it.
VOLUME_CAPACITY = 64 << 20
#: Bound on the volumes one run makes (every case asks for at most one or two).
MAX_VOLUMES = 256


class FixtureError(Exception):
    """The target refused to make (or find) a fixture; the message is libvirt's."""


def libvirt_call(peer: Peer, name: str, args: Any = None) -> Any:
    """Call procedure ``name`` of libvirt's remote program through the peer's engine and
    return its result; an ERROR reply raises :class:`FixtureError` with libvirt's message."""
    serial = peer.engine.next_serial()
    peer.send(Call(serial, PROG, 1, int(_LV.constants[name]), args))
    while True:
        event = peer.event(what=f"the reply to {name}")
        if isinstance(event, ErrorReply) and event.serial == serial:
            raise FixtureError(f"{name}: {event.error.message} (code {event.error.code})")
        if isinstance(event, Reply) and event.serial == serial:
            return event.result


def open_uri(peer: Peer, uri: str) -> None:
    libvirt_call(peer, "CONNECT_OPEN", _LV["vir_connect_open_args"](name=uri, flags=0))


class LibvirtFixtures:
    """Pool, volumes and domain of one run (see the module docstring). ``connect`` opens a
    new connection to the target; ``pool`` is a pool to use instead of making one."""

    def __init__(
        self,
        connect: Callable[[], Peer],
        uri: str,
        domain_uri: str,
        pool: str | None = None,
        directory: str = "/tmp",
    ) -> None:
        self._connect = connect
        self.uri, self.domain_uri = uri, domain_uri
        self.given_pool = pool
        self.directory = directory
        self.tag = secrets.token_hex(4)
        self.pool: str | None = None
        self.pool_problem = ""
        self.domain_name: str | None = None
        self.domain_problem = ""
        self._own_pool: Any = None
        self._volumes: list[Any] = []
        self._storage: Peer | None = None
        self._domains: Peer | None = None
        self._domain: Any = None
        self.made: list[str] = []  # what was made, for the report

    # -- set-up ------------------------------------------------------------------------
    def setup(self) -> None:
        """Make the pool and the domain; a failure is recorded, never raised."""
        try:
            self._setup_pool()
        except (FixtureError, Violation, Closed, OSError) as exc:
            self.pool_problem = str(exc)
        try:
            self._setup_domain()
        except (FixtureError, Violation, Closed, OSError) as exc:
            self.domain_problem = str(exc)

    def _setup_pool(self) -> None:
        self._storage = peer = self._connect()
        open_uri(peer, self.uri)
        if self.given_pool is not None:
            pool = libvirt_call(
                peer, "STORAGE_POOL_LOOKUP_BY_NAME", _LV["vir_pool_lookup_by_name_args"](
                    name=self.given_pool)
            ).pool  # fmt: skip
            self.pool = self.given_pool
            self._pool_ref = pool
            return
        name = f"xdrstream-conformance-{self.tag}"
        target = f"{self.directory.rstrip('/')}/{name}"
        xml = (
            f"<pool type='dir'><name>{escape(name)}</name>"
            f"<target><path>{escape(target)}</path></target></pool>"
        )
        pool = libvirt_call(
            peer, "STORAGE_POOL_DEFINE_XML", _LV["vir_pool_define_xml_args"](xml=xml, flags=0)
        ).pool
        self._own_pool = self._pool_ref = pool
        flags = _LV["vir_pool_flags_args"]
        libvirt_call(peer, "STORAGE_POOL_BUILD", flags(pool=pool, flags=0))
        libvirt_call(peer, "STORAGE_POOL_CREATE", flags(pool=pool, flags=0))
        self.pool = name
        self.made.append(f"pool {name} (dir {target})")

    def _setup_domain(self) -> None:
        self._domains = peer = self._connect()
        open_uri(peer, self.domain_uri)
        name = f"xdrstream-conformance-{self.tag}"
        xml = (
            f"<domain type='test'><name>{name}</name><memory unit='KiB'>8192</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
        )
        self._domain = libvirt_call(
            peer, "DOMAIN_CREATE_XML", _LV["vir_domain_create_xml_args"](xml_desc=xml, flags=0)
        ).dom
        self.domain_name = name
        self.made.append(f"domain {name} ({self.domain_uri})")

    # -- what cases ask for ------------------------------------------------------------
    def volume(self) -> str:
        """A new raw volume of :data:`VOLUME_CAPACITY` with allocation 0 in the run's pool;
        its name. :class:`FixtureError` says why there is none."""
        if self._storage is None or self.pool is None:
            raise FixtureError(f"no storage pool for the volume cases: {self.pool_problem}")
        if len(self._volumes) >= MAX_VOLUMES:
            raise FixtureError(f"this run made {MAX_VOLUMES} volumes already")
        name = f"xdrstream-conformance-{self.tag}-{len(self._volumes)}.raw"
        xml = (
            f"<volume><name>{name}</name><capacity unit='bytes'>{VOLUME_CAPACITY}</capacity>"
            "<allocation unit='bytes'>0</allocation><target><format type='raw'/></target>"
            "</volume>"
        )
        vol = libvirt_call(
            self._storage,
            "STORAGE_VOL_CREATE_XML",
            _LV["vir_vol_create_xml_args"](pool=self._pool_ref, xml=xml, flags=0),
        ).vol
        self._volumes.append(vol)
        return name

    def domain(self) -> str:
        if self.domain_name is None:
            raise FixtureError(f"no domain of the suite's own: {self.domain_problem}")
        return self.domain_name

    # -- removal -----------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Remove everything made; returns what could not be removed (libvirt's messages)."""
        problems: list[str] = []

        def attempt(peer: Peer | None, name: str, args: Any) -> None:
            if peer is None:
                return
            try:
                libvirt_call(peer, name, args)
            except (FixtureError, Violation, Closed, OSError) as exc:
                problems.append(str(exc))

        storage, domains = self._storage, self._domains
        for vol in self._volumes:
            attempt(storage, "STORAGE_VOL_DELETE", _LV["vir_vol_delete_args"](vol=vol, flags=0))
        self._volumes.clear()
        if self._own_pool is not None:
            ref, flags = _LV["vir_pool_ref_args"], _LV["vir_pool_flags_args"]
            attempt(storage, "STORAGE_POOL_DESTROY", ref(pool=self._own_pool))
            attempt(storage, "STORAGE_POOL_DELETE", flags(pool=self._own_pool, flags=0))
            attempt(storage, "STORAGE_POOL_UNDEFINE", ref(pool=self._own_pool))
            self._own_pool = None
        if self._domain is not None:
            attempt(domains, "DOMAIN_DESTROY", _LV["vir_domain_ref_args"](dom=self._domain))
            self._domain = None
        for peer in (storage, domains):
            if peer is not None:
                with contextlib.suppress(FixtureError, Violation, Closed, OSError):
                    libvirt_call(peer, "CONNECT_CLOSE")
                peer.close()
        self._storage = self._domains = None
        return problems
