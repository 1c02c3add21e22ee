"""Fixtures for the codec tests (strategies live in codec_values.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from codec_values import EVERYTHING, strategy_for
from hypothesis import strategies as st

from xdrstream.codec import Schema, load_schema


@pytest.fixture(scope="session")
def everything() -> Schema:
    return load_schema(EVERYTHING)


@pytest.fixture(scope="session")
def values_of(everything: Schema) -> Callable[[str], st.SearchStrategy[Any]]:
    return lambda name: strategy_for(everything, name)
