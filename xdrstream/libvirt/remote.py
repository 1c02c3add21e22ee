"""libvirt's remote program: numbers, the compiled schema and URI helpers (spec.md §11.3).

The wire layout is in ``xdrstream/protocol/schemas/libvirt_remote.x``; this module names
the numbers the client and the storage server use.
"""

from __future__ import annotations

from typing import Any

from xdrstream.protocol import schemas
from xdrstream.transport import address as addresses

# Numbers from the built-in libvirt_remote.x (issue 10: a fact is written once, there).
_C = schemas.load("libvirt_remote").constants
PROGRAM = int(_C["REMOTE_PROGRAM"])
VERSION = int(_C["REMOTE_PROTOCOL_VERSION"])

# procedures (libvirt's REMOTE_PROC_*)
CONNECT_OPEN = int(_C["CONNECT_OPEN"])
CONNECT_CLOSE = int(_C["CONNECT_CLOSE"])
CONNECT_GET_TYPE = int(_C["CONNECT_GET_TYPE"])
CONNECT_GET_VERSION = int(_C["CONNECT_GET_VERSION"])
DOMAIN_LOOKUP_BY_NAME = int(_C["DOMAIN_LOOKUP_BY_NAME"])
CONNECT_SUPPORTS_FEATURE = int(_C["CONNECT_SUPPORTS_FEATURE"])
AUTH_LIST = int(_C["AUTH_LIST"])
STORAGE_POOL_LOOKUP_BY_NAME = int(_C["STORAGE_POOL_LOOKUP_BY_NAME"])
STORAGE_POOL_LOOKUP_BY_VOLUME = int(_C["STORAGE_POOL_LOOKUP_BY_VOLUME"])
STORAGE_POOL_GET_INFO = int(_C["STORAGE_POOL_GET_INFO"])
STORAGE_POOL_GET_XML_DESC = int(_C["STORAGE_POOL_GET_XML_DESC"])
STORAGE_POOL_GET_AUTOSTART = int(_C["STORAGE_POOL_GET_AUTOSTART"])
STORAGE_VOL_LOOKUP_BY_NAME = int(_C["STORAGE_VOL_LOOKUP_BY_NAME"])
STORAGE_VOL_LOOKUP_BY_KEY = int(_C["STORAGE_VOL_LOOKUP_BY_KEY"])
STORAGE_VOL_LOOKUP_BY_PATH = int(_C["STORAGE_VOL_LOOKUP_BY_PATH"])
STORAGE_VOL_GET_INFO = int(_C["STORAGE_VOL_GET_INFO"])
STORAGE_VOL_GET_XML_DESC = int(_C["STORAGE_VOL_GET_XML_DESC"])
STORAGE_VOL_GET_PATH = int(_C["STORAGE_VOL_GET_PATH"])
CONNECT_GET_URI = int(_C["CONNECT_GET_URI"])
STORAGE_POOL_IS_ACTIVE = int(_C["STORAGE_POOL_IS_ACTIVE"])
STORAGE_POOL_IS_PERSISTENT = int(_C["STORAGE_POOL_IS_PERSISTENT"])
CONNECT_GET_LIB_VERSION = int(_C["CONNECT_GET_LIB_VERSION"])
STORAGE_VOL_UPLOAD = int(_C["STORAGE_VOL_UPLOAD"])
STORAGE_VOL_DOWNLOAD = int(_C["STORAGE_VOL_DOWNLOAD"])
DOMAIN_SCREENSHOT = int(_C["DOMAIN_SCREENSHOT"])
CONNECT_LIST_ALL_STORAGE_POOLS = int(_C["CONNECT_LIST_ALL_STORAGE_POOLS"])
STORAGE_POOL_LIST_ALL_VOLUMES = int(_C["STORAGE_POOL_LIST_ALL_VOLUMES"])
CONNECT_REGISTER_CLOSE_CALLBACK = int(_C["CONNECT_REGISTER_CLOSE_CALLBACK"])
CONNECT_UNREGISTER_CLOSE_CALLBACK = int(_C["CONNECT_UNREGISTER_CLOSE_CALLBACK"])

# CONNECT_SUPPORTS_FEATURE features (VIR_DRV_FEATURE_*)
FEATURE_PROGRAM_KEEPALIVE = int(_C["VIR_DRV_FEATURE_PROGRAM_KEEPALIVE"])
FEATURE_REMOTE_EVENT_CALLBACK = int(_C["VIR_DRV_FEATURE_REMOTE_EVENT_CALLBACK"])
FEATURE_REMOTE_CLOSE_CALLBACK = int(_C["VIR_DRV_FEATURE_REMOTE_CLOSE_CALLBACK"])

AUTH_NONE = int(_C["REMOTE_AUTH_NONE"])
SPARSE_STREAM = int(_C["VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM"])  # ..._DOWNLOAD_... too

POOL_RUNNING = 2  # VIR_STORAGE_POOL_RUNNING
VOL_FILE = 0  # VIR_STORAGE_VOL_FILE

# CONNECT_LIST_ALL_STORAGE_POOLS flags (VIR_CONNECT_LIST_STORAGE_POOLS_*)
LIST_INACTIVE = 1
LIST_ACTIVE = 2
LIST_PERSISTENT = 4
LIST_TRANSIENT = 8
LIST_AUTOSTART = 16
LIST_NO_AUTOSTART = 32


def schema() -> Any:
    """The compiled ``libvirt_remote.x``."""
    return schemas.load("libvirt_remote")


def connect_name(address: addresses.Address) -> str | None:
    """The name CONNECT_OPEN carries for a parsed URI, as libvirt's remote driver sends it:
    the transport and the ``socket=`` parameter dropped (``qemu+unix:///session?socket=X``
    -> ``qemu:///session``, ``test+tcp://h/default`` -> ``test:///default``).  None for the
    short forms (``unix:PATH``), which leave the choice of driver to the daemon."""
    if address.driver is None:
        return None
    return f"{address.driver}://{address.uri_path or '/'}"
