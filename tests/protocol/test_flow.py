"""The flow-control policy (spec.md §8.2) on its own: numbers in, decisions out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from xdrstream.protocol import LocalProtocolError
from xdrstream.protocol.flow import FlowControl


@dataclass
class Stream:
    serial: int
    unconsumed: int = 0


def test_a_stream_at_the_limit_pauses_reading_until_it_consumes() -> None:
    flow = FlowControl(100)
    a, b = Stream(1), Stream(3)
    flow.delivered(a, 99)
    flow.delivered(b, 50)
    assert not flow.paused
    flow.delivered(a, 1)
    assert flow.paused and a.unconsumed == 100
    flow.delivered(b, 60)  # a second stream over the limit
    flow.consumed(a, 1)
    assert flow.paused  # b still holds the reader back
    flow.release(b)  # b ended: its count no longer matters
    assert not flow.paused and b.unconsumed == 0


def test_consuming_more_than_delivered_is_the_applications_error() -> None:
    flow = FlowControl(10)
    s = Stream(5)
    flow.delivered(s, 4)
    with pytest.raises(LocalProtocolError, match=r"§8\.2.*consumed 5 of 4"):
        flow.consumed(s, 5)
    with pytest.raises(LocalProtocolError):
        flow.consumed(s, -1)
    assert s.unconsumed == 4 and not flow.paused


def test_no_limit_counts_nothing() -> None:
    flow = FlowControl(None)
    s = Stream(1)
    flow.delivered(s, 1 << 40)
    assert s.unconsumed == 0 and not flow.paused
