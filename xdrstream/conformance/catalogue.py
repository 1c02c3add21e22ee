"""The case catalogue: what a conforming server (or client) must do, one case per check.

A :class:`Case` has an id that follows spec.md's sections (``4.3.2/1`` is the first case of
§4.3.2), a one-line title, the requirement it checks (the spec's rule, paraphrased), the
behaviour it expects of the target (reply, error reply with code, close, ignore...), the
programs it applies to (``restore`` = the demonstration program of §11.2, ``libvirt`` =
libvirt's remote program of §11.3), its level (``MUST`` or ``SHOULD``: SHOULD cases only
run with ``--strict``) and a function that drives it. The function gets a :class:`Context`
(connect, helpers) and raises :class:`~xdrstream.conformance.peer.Violation` when the target
fails, :class:`Skip` when the case cannot run; returning means pass.

Four outcomes (plus ``error``, a bug of the case itself):

* ``pass`` -- the target did what the case expects;
* ``fail`` -- it did not;
* ``skip`` -- the case could not run here; the detail says why;
* ``deviation`` -- it did not, and the case lists this as a :class:`Deviation` of the
  implementation the target says it is (:class:`Implementation`, asked of the target itself,
  e.g. libvirt's CONNECT_GET_TYPE and CONNECT_GET_LIB_VERSION). A deviation case still runs:
  if the target behaves as the spec says, it passes. Deviations are counted apart; a run
  with a deviation fails unless it is allowed (``--allow-deviation CASE-ID``), see
  :func:`exit_status`.

Cases live in :mod:`xdrstream.conformance.cases` (server under test) and are registered with
:func:`case`. :func:`select` filters them by glob patterns (``4.*``, ``7.3.1/2``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import ssl
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdrstream.conformance.fixtures import LibvirtFixtures
from xdrstream.conformance.peer import Closed, Peer, Violation, unreachable
from xdrstream.protocol import Program, programs_from_schema, schemas
from xdrstream.transport import address as addresses

__all__ = [
    "CATALOGUE",
    "OUTCOMES",
    "Case",
    "Context",
    "Deviation",
    "Implementation",
    "LibvirtSettings",
    "Result",
    "Skip",
    "case",
    "exit_status",
    "prepared",
    "run_case",
    "select",
]

RESTORE = frozenset({"restore"})
LIBVIRT = frozenset({"libvirt"})
ANY = frozenset({"restore", "libvirt"})


OUTCOMES = ("pass", "fail", "skip", "deviation", "error")


class Skip(Exception):
    """The case cannot run against this target; the message says why."""


@dataclass(frozen=True)
class Implementation:
    """Who the target says it is: ``name`` (``libvirtd``, ``xdrstream``), ``version``
    (``9.0.0``) and ``how`` it was asked (the procedures that told)."""

    name: str
    version: str
    how: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Deviation:
    """A MUST of spec.md that a known implementation breaks: ``implementation`` (as
    :attr:`Implementation.name`), what it does instead (``behaviour``) and the version it was
    seen in (``seen``). It applies to every version of that implementation: a later one that
    conforms simply passes the case."""

    implementation: str
    behaviour: str
    seen: str = ""

    def applies(self, target: Implementation | None) -> bool:
        return target is not None and target.name == self.implementation


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    requirement: str
    expect: str
    run: Callable[[Context], None]
    programs: frozenset[str] = RESTORE
    level: str = "MUST"
    #: what known implementations do instead (the case runs; failing it against one of
    #: them is outcome ``deviation``, not ``fail``)
    deviations: tuple[Deviation, ...] = ()
    #: "server": run against a server by ``conformance run``; "client": a server behaviour
    #: played by ``conformance serve`` from a trace (``client-*.jsonl``) to a client under test
    role: str = "server"

    @property
    def section(self) -> str:
        return self.id.split("/", 1)[0]

    def sort_key(self) -> tuple[Any, ...]:
        section, _, number = self.id.partition("/")
        return (*(int(p) for p in section.split(".")), int(number or 0))


CATALOGUE: dict[str, Case] = {}


def case(
    case_id: str,
    title: str,
    *,
    requirement: str,
    expect: str,
    programs: frozenset[str] = RESTORE,
    level: str = "MUST",
    deviations: Sequence[Deviation] = (),
    role: str = "server",
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register the decorated function as catalogue case ``case_id``."""

    def register(function: Callable[[Context], None]) -> Callable[[Context], None]:
        if case_id in CATALOGUE:
            raise ValueError(f"duplicate case id {case_id}")
        CATALOGUE[case_id] = Case(
            case_id, title, requirement, expect, function, programs, level, tuple(deviations), role
        )
        return function

    return register


def all_cases() -> list[Case]:
    import xdrstream.conformance.cases  # noqa: F401  (registers the cases)

    return sorted(CATALOGUE.values(), key=Case.sort_key)


def select(
    cases: Iterable[Case], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Case]:
    """Cases whose id matches one of ``include`` (all if empty) and none of ``exclude``.
    A pattern without ``/`` also matches every case of that section (``7.3.1``)."""

    def matches(case_id: str, pattern: str) -> bool:
        if fnmatch.fnmatchcase(case_id, pattern):
            return True
        return "/" not in pattern and fnmatch.fnmatchcase(case_id.split("/")[0], pattern)

    out = []
    for item in cases:
        if include and not any(matches(item.id, p) for p in include):
            continue
        if any(matches(item.id, p) for p in exclude):
            continue
        out.append(item)
    return out


@dataclass(frozen=True)
class LibvirtSettings:
    """What libvirt cases need: the URIs to open (``uri`` for volumes, ``domain_uri`` for
    the domain cases). The suite makes its own pool (in a new directory under
    ``fixture_dir`` on the target's host), volumes and domain (:mod:`.fixtures`); ``pool``
    names a pool to make the volumes in instead, ``volume`` a volume the dense cases may
    overwrite when no volume can be made, ``domain`` the domain used when none can be made
    (the test driver's ``test``)."""

    uri: str = "qemu:///session"
    domain_uri: str = "test:///default"
    domain: str = "test"
    pool: str | None = None
    volume: str | None = None
    fixture_dir: str = "/tmp"


@dataclass
class Context:
    """Everything a case needs to reach the target."""

    address: addresses.Address
    program: str = "restore"
    tls: ssl.SSLContext | None = None
    timeout: float = 5.0
    libvirt: LibvirtSettings = field(default_factory=LibvirtSettings)
    peers: list[Peer] = field(default_factory=list)
    #: who the target says it is (None: not asked, or it did not say)
    implementation: Implementation | None = None
    #: what the suite made on a libvirt target for this run (see :func:`prepared`)
    fixtures: LibvirtFixtures | None = None

    def programs(self) -> list[Program]:
        name = "libvirt_remote" if self.program == "libvirt" else "restore"
        return programs_from_schema(schemas.load(name))

    def open_peer(self) -> Peer:
        """A new connection that no case owns (the caller closes it)."""
        try:
            return Peer(
                self.address,
                self.programs(),
                tls=self.tls,
                timeout=self.timeout,
                tls_confirmation=self.program == "libvirt",
            )
        except (OSError, ssl.SSLError) as exc:
            raise Violation(unreachable(self.address, exc)) from None

    def connect(self) -> Peer:
        """A new connection of the running case, closed when the case ends."""
        peer = self.open_peer()
        self.peers.append(peer)
        return peer

    def close_all(self) -> None:
        while self.peers:
            self.peers.pop().close()


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: str  # one of OUTCOMES
    detail: str = ""
    seconds: float = 0.0
    #: for outcome "deviation": the known deviation and the target it was seen on
    deviation: Deviation | None = None
    implementation: Implementation | None = None

    def deviation_info(self) -> dict[str, str] | None:
        """What the reports show of a deviation: implementation, version, spec §, id."""
        if self.deviation is None:
            return None
        return {
            "id": self.case.id,
            "section": f"§{self.case.section}",
            "implementation": self.deviation.implementation,
            "version": self.implementation.version if self.implementation else "",
            "behaviour": self.deviation.behaviour,
        }


@contextlib.contextmanager
def prepared(context: Context) -> Iterator[LibvirtFixtures | None]:
    """For a libvirt target: make the run's fixtures (:mod:`.fixtures`) and remove them
    after the block, whatever happens in it. Nothing to do for other programs."""
    if context.program != "libvirt":
        yield None
        return
    settings = context.libvirt
    fixtures = LibvirtFixtures(
        context.open_peer, settings.uri, settings.domain_uri, settings.pool, settings.fixture_dir
    )
    fixtures.setup()
    context.fixtures = fixtures
    try:
        yield fixtures
    finally:
        context.fixtures = None
        fixtures.teardown()


def exit_status(results: Iterable[Result], allowed: Sequence[str] = ()) -> int:
    """1 when a case failed or errored, or showed a deviation whose case id matches none of
    ``allowed`` (globs, as ``--allow-deviation``); else 0. Skips never fail a run."""
    for result in results:
        if result.outcome in ("fail", "error"):
            return 1
        if result.outcome == "deviation" and not any(
            fnmatch.fnmatchcase(result.case.id, pattern) for pattern in allowed
        ):
            return 1
    return 0


def run_case(item: Case, context: Context, strict: bool = False) -> Result:
    """Run one case on fresh connections; every connection it opened is closed after."""
    if item.role == "client":
        return Result(item, "skip", "a client case: run `xdrstream conformance serve`")
    if context.program not in item.programs:
        return Result(item, "skip", f"applies to {', '.join(sorted(item.programs))} only")
    if item.level != "MUST" and not strict:
        return Result(item, "skip", f"{item.level}-level case: run with --strict")
    known = next((d for d in item.deviations if d.applies(context.implementation)), None)
    started = time.monotonic()
    try:
        item.run(context)
        outcome, detail = "pass", ""
    except Skip as exc:
        outcome, detail = "skip", str(exc)
    except Violation as exc:
        outcome, detail = "fail", str(exc)
    except Closed as exc:
        outcome, detail = "fail", f"the target closed the connection unexpectedly ({exc})"
    except Exception as exc:  # a bug in the case or an I/O failure: report, do not crash
        last = traceback.extract_tb(exc.__traceback__)[-1]
        outcome = "error"
        detail = f"{type(exc).__name__}: {exc} (at {last.filename}:{last.lineno})"
    finally:
        context.close_all()
    seconds = time.monotonic() - started
    if known is not None and outcome == "fail":
        detail = f"known deviation of {context.implementation}: {known.behaviour} ({detail})"
        return Result(item, "deviation", detail, seconds, known, context.implementation)
    return Result(item, outcome, detail, seconds)


def run_cases(cases: Iterable[Case], context: Context, strict: bool = False) -> Iterator[Result]:
    for item in cases:
        yield run_case(item, context, strict)
