"""libvirt interoperability: a remote-program client and a storage server (spec.md §11.3).

* :class:`LibvirtClient` (:mod:`.client`) -- talk to a real libvirtd: pools, volumes,
  upload/download (sparse too), test-driver screenshots.
* :class:`StorageServer` (:mod:`.storage_server`) -- answer the remote-program calls that
  ``virsh`` makes for vol-upload/vol-download/vol-list/pool-list/vol-info/pool-info on a
  directory of files; ``xdrstream serve --libvirt-storage DIR [--pool NAME]`` runs it.
* :class:`LibvirtError` (:mod:`.errors`) -- libvirt's error code, domain and message.
* :mod:`.protocol` -- the remote program as data, from libvirt's own ``.x`` files (a source
  tree) or the built-in subset: every procedure by name and number, its argument, result
  and stream; :class:`LibvirtClient` calls any of them by name.
"""

from xdrstream.libvirt.client import LibvirtClient, Transfer
from xdrstream.libvirt.errors import LibvirtError, libvirt_error

__all__ = ["LibvirtClient", "LibvirtError", "Transfer", "libvirt_error"]
