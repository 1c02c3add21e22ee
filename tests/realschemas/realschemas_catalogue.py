"""The real ``.x`` files the compiler is proven on (issues 10 and 17), as their projects ship
and build them: where they come from, which files a build compiles together (in order), and
which C headers give the constants rpcgen leaves to the C compiler.

Source trees come from Debian's registry (tests/sources.py); the rpcsvc files are the ones
installed on this machine (rpcsvc-proto, libtirpc-dev, libnsl-dev), since that is where
rpcgen's users find them. Each :class:`Unit` is one row of the compile table: its last file
is the row's file, the ones before it are the files its build compiles first.
"""

from __future__ import annotations

import functools
import glob
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c_header_constants import referenced
from sources import debian_source, debian_tree_kind

from xdrstream.codec import Schema, load_schema
from xdrstream.codec.cheaders import c_constants, passed_through_constants


@dataclass(frozen=True)
class Project:
    name: str
    package: str | None  # Debian source package; None: files installed on this machine
    release: str = "bookworm"

    def tree(self) -> Path:
        if self.package is None:
            return Path("/")
        return debian_source(self.package, self.release)

    def version(self) -> str:
        """ "libvirt 9.0.0-4+deb12u2 (bookworm)", as the registry gave it."""
        if self.package is None:
            return "installed"
        tree = self.tree()
        marker = (tree / ".complete").read_text().split()[-1]
        version = marker.split("_", 1)[1].removesuffix(".dsc")
        for suffix in (".orig.tar.gz", ".orig.tar.xz", ".orig.tar.bz2"):
            version = version.removesuffix(suffix)
        kind = "" if debian_tree_kind(tree) == "debian" else ", upstream tarball"
        return f"{self.package} {version} ({self.release}{kind})"


LIBVIRT = Project("libvirt", "libvirt")
GLUSTERFS = Project("GlusterFS", "glusterfs")
GANESHA = Project("NFS-Ganesha", "nfs-ganesha")
# bookworm's libnfs 4.0.0 is not on the mirror (404); trixie's 5.0.2 is.
LIBNFS = Project("libnfs", "libnfs", "trixie")
RPCSVC = Project("rpcsvc", None)


@dataclass(frozen=True)
class Unit:
    project: Project
    files: tuple[str, ...]  # paths in the tree, compiled together in this order
    headers: tuple[str, ...] = ()  # C headers (in the tree) giving -D constants
    rpc_constants: bool = False  # the <rpc/auth.h> constants (AUTH_SYS, ...)
    # .x constant -> the header constant the project's own C uses in its place
    aliases: tuple[tuple[str, str], ...] = ()
    # Out of scope (issue 17): why, instead of a compile.
    out_of_scope: str | None = None

    @property
    def name(self) -> str:
        return self.files[-1]

    @property
    def label(self) -> str:
        first = ", ".join(Path(f).name for f in self.files[:-1])
        return self.name + (f" (after {first})" if first else "")

    def paths(self) -> list[Path]:
        tree = self.project.tree()
        return [tree / f.lstrip("/") for f in self.files]

    def constants(self) -> dict[str, int]:
        """The constants the files take from C: from the unit's headers and from the files'
        own ``%#define`` lines (which rpcgen copies into its header), read by the codec's
        C constant reader."""
        tree = self.project.tree()
        known = c_constants(
            (tree / h).read_text(encoding="utf-8", errors="replace") for h in self.headers
        )
        known.update((alias, known[name]) for alias, name in self.aliases)
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in self.paths()]
        for text in texts:
            known.update(passed_through_constants(text))
        return referenced(known, "\n".join(texts))

    def load(self, **options: Any) -> Schema:
        """The unit compiled as its build compiles it (SchemaError if we refuse it)."""
        paths = self.paths()
        return load_schema(
            paths if len(paths) > 1 else paths[0],
            constants=self.constants(),
            include=[paths[-1].parent],
            rpc_constants=self.rpc_constants,
            **options,
        )

    def package_version(self) -> str:
        if self.project.package is None:
            return installed_package(self.paths()[-1])
        return self.project.version()


@functools.cache
def installed_package(path: Path) -> str:
    """The Debian binary package (and version) that installed ``path``."""
    owner = subprocess.run(["dpkg-query", "-S", str(path)], capture_output=True, text=True)
    if owner.returncode != 0:
        return "installed"
    package = owner.stdout.split(":")[0].strip()
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
    ).stdout
    return f"{package} {version} (installed)"


_VIRT_HEADERS = ("include/libvirt/libvirt-host.h", "include/libvirt/libvirt-common.h.in")
_REMOTE = "src/remote/remote_protocol.x"

LIBVIRT_UNITS = (
    Unit(LIBVIRT, (_REMOTE,), _VIRT_HEADERS),
    Unit(LIBVIRT, (_REMOTE, "src/remote/qemu_protocol.x"), _VIRT_HEADERS),
    Unit(LIBVIRT, (_REMOTE, "src/remote/lxc_protocol.x"), _VIRT_HEADERS),
    Unit(LIBVIRT, ("src/admin/admin_protocol.x",), _VIRT_HEADERS),
    Unit(LIBVIRT, ("src/rpc/virnetprotocol.x",), _VIRT_HEADERS),
    Unit(LIBVIRT, ("src/rpc/virkeepaliveprotocol.x",)),
    Unit(LIBVIRT, ("src/locking/lock_protocol.x",), _VIRT_HEADERS),
    Unit(LIBVIRT, ("src/logging/log_protocol.x",), _VIRT_HEADERS),
    Unit(LIBVIRT, ("src/lxc/lxc_monitor_protocol.x",)),
)

_GLUSTER = "rpc/xdr/src/"
# GlusterFS's build passes no -D to rpcgen; constants come from the headers its .x files
# %#include (compat.h: UNIX_PATH_MAX; glusterfs-fops.h: GF_DATA_TYPE_*).
_GLUSTER_HEADERS = (
    "libglusterfs/src/glusterfs/compat.h",
    "libglusterfs/src/glusterfs/glusterfs-fops.h",
)
_GLUSTER_NFS3 = "takes NFSv3 types that only GlusterFS's hand-written C (xdr-nfs3.h) defines"
GLUSTERFS_UNITS = (
    *(
        Unit(GLUSTERFS, (_GLUSTER + f,), _GLUSTER_HEADERS)
        for f in (
            "changelog-xdr.x",
            "cli1-xdr.x",
            "glusterd1-xdr.x",
            "glusterfs3-xdr.x",
            "nlm4-xdr.x",
            "nsm-xdr.x",
            "portmap-xdr.x",
            "rpc-common-xdr.x",
        )
    ),
    Unit(
        GLUSTERFS, (_GLUSTER + "glusterfs3-xdr.x", _GLUSTER + "glusterfs4-xdr.x"), _GLUSTER_HEADERS
    ),
    Unit(GLUSTERFS, (_GLUSTER + "acl3-xdr.x",), out_of_scope=_GLUSTER_NFS3),
    Unit(GLUSTERFS, (_GLUSTER + "mount3udp.x",), out_of_scope=_GLUSTER_NFS3),
)

_GANESHA = "src/Protocols/XDR/"
GANESHA_UNITS = (
    *(
        Unit(GANESHA, (_GANESHA + f,), rpc_constants=f in ("nfs4.x", "nfsv41.x"))
        for f in ("nfs23.x", "nfs4.x", "nfsv41.x", "nlm4.x", "nsm.x", "rquota.x")
    ),
    # mount.x has its FHSIZE3 commented out; Ganesha's own xdr_mount.c bounds fhandle3 by
    # NFS3_FHSIZE of src/include/nfs23.h instead, so that is the value its build gives it.
    Unit(
        GANESHA,
        (_GANESHA + "nfs23.x", _GANESHA + "mount.x"),
        ("src/include/nfs23.h",),
        aliases=(("FHSIZE3", "NFS3_FHSIZE"),),
    ),
    Unit(GANESHA, (_GANESHA + "nfs23.x", _GANESHA + "nfsacl.x")),
    Unit(
        GANESHA,
        (_GANESHA + "flex_files_prot.x",),
        out_of_scope="takes device_error4 and other NFSv4.2 types that only Ganesha's C defines",
    ),
)

LIBNFS_UNITS = tuple(
    Unit(LIBNFS, (f,), rpc_constants=f == "nfs4/nfs4.x")
    for f in (
        "mount/mount.x",
        "nfs/nfs.x",
        "nfs4/nfs4.x",
        "nlm/nlm.x",
        "nsm/nsm.x",
        "portmap/portmap.x",
        "rquota/rquota.x",
    )
)


# key_prot.x's MAXNETNAMELEN: rpcgen's C gets it from libtirpc's <rpc/auth.h> (via rpc.h).
_TIRPC_HEADERS = ("usr/include/tirpc/rpc/auth.h",)


def rpcsvc_units() -> tuple[Unit, ...]:
    """The rpcsvc files installed here (the same as rpcsvc-proto's source package ships)."""
    found = sorted(glob.glob("/usr/include/rpcsvc/*.x"))
    found += sorted(glob.glob("/usr/include/tirpc/**/*.x", recursive=True))
    units = []
    for path in found:
        # nis_callback.x uses nis.x's types (its C includes <rpcsvc/nis.h>).
        group = ("/usr/include/rpcsvc/nis.x", path) if path.endswith("/nis_callback.x") else (path,)
        units.append(Unit(RPCSVC, group, _TIRPC_HEADERS))
    return tuple(units)


def all_units() -> tuple[Unit, ...]:
    return (*LIBVIRT_UNITS, *rpcsvc_units(), *GLUSTERFS_UNITS, *GANESHA_UNITS, *LIBNFS_UNITS)


def unit(project: Project, name: str) -> Unit:
    """The catalogue's unit whose row file is ``name``."""
    (found,) = (u for u in all_units() if u.project is project and u.name == name)
    return found
