"""The judged clients' table, shared by conftest.py's summary hook and test_real_clients.py.

Its own module: every test directory has a ``conftest`` and only one of them is importable
by that name at a time (the reason for tests/fuzz/fuzz_paths.py too).
"""

from __future__ import annotations

import pytest

#: client -> outcome counts of the judged clients (filled by test_real_clients.py)
JUDGED_CLIENTS = pytest.StashKey[dict[str, dict[str, int]]]()
