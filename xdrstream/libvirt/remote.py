"""libvirt's remote program: numbers, the compiled schema and URI helpers (spec.md §11.3).

The wire layout is in ``xdrstream/protocol/schemas/libvirt_remote.x``; this module names
the numbers the client and the storage server use.
"""

from __future__ import annotations

from typing import Any

from xdrstream.protocol import schemas
from xdrstream.transport import address as addresses

PROGRAM = 0x20008086
VERSION = 1

# procedures (libvirt's REMOTE_PROC_*)
CONNECT_OPEN = 1
CONNECT_CLOSE = 2
CONNECT_GET_TYPE = 3
CONNECT_GET_VERSION = 4
DOMAIN_LOOKUP_BY_NAME = 23
CONNECT_SUPPORTS_FEATURE = 60
AUTH_LIST = 66
STORAGE_POOL_LOOKUP_BY_NAME = 84
STORAGE_POOL_LOOKUP_BY_VOLUME = 86
STORAGE_POOL_GET_INFO = 87
STORAGE_POOL_GET_XML_DESC = 88
STORAGE_POOL_GET_AUTOSTART = 89
STORAGE_VOL_LOOKUP_BY_NAME = 95
STORAGE_VOL_LOOKUP_BY_KEY = 96
STORAGE_VOL_LOOKUP_BY_PATH = 97
STORAGE_VOL_GET_INFO = 98
STORAGE_VOL_GET_XML_DESC = 99
STORAGE_VOL_GET_PATH = 100
CONNECT_GET_URI = 110
STORAGE_POOL_IS_ACTIVE = 154
STORAGE_POOL_IS_PERSISTENT = 155
CONNECT_GET_LIB_VERSION = 157
STORAGE_VOL_UPLOAD = 208
STORAGE_VOL_DOWNLOAD = 209
DOMAIN_SCREENSHOT = 211
CONNECT_LIST_ALL_STORAGE_POOLS = 281
STORAGE_POOL_LIST_ALL_VOLUMES = 282
CONNECT_REGISTER_CLOSE_CALLBACK = 360
CONNECT_UNREGISTER_CLOSE_CALLBACK = 361

# CONNECT_SUPPORTS_FEATURE features (VIR_DRV_FEATURE_*)
FEATURE_PROGRAM_KEEPALIVE = 10
FEATURE_REMOTE_EVENT_CALLBACK = 14
FEATURE_REMOTE_CLOSE_CALLBACK = 15

AUTH_NONE = 0
SPARSE_STREAM = 1  # VIR_STORAGE_VOL_{UPLOAD,DOWNLOAD}_SPARSE_STREAM

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
