"""Paths shared by the fuzzing tests: the repository root and every shipped schema."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted(
    [
        *(ROOT / "xdrstream/protocol/schemas").glob("*.x"),
        *(ROOT / "tests/codec/schemas").glob("*.x"),
    ]
)
