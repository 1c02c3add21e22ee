"""Linked lists through optional data (RFC 4506 section 4.19; issue 10): coded in a loop,
as long as the input allows, strict both ways; true nesting keeps its depth limit."""

from __future__ import annotations

import struct

import pytest

from xdrstream.codec import DecodeError, EncodeError, Schema, compile_schema

TEXT = """
struct node { int v; node *next; };
typedef node *list;
struct entry3 { unsigned hyper fileid; string name<255>; entry3 *nextentry; };
struct dirlist3 { entry3 *entries; bool eof; };
struct rp__list { unsigned int prog; string addr<>; struct rp__list *rpcb_next; };
typedef rp__list *rpcblist_ptr;
struct tree { tree *left; int v; };
"""


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


@pytest.fixture(scope="module")
def schema() -> Schema:
    return compile_schema(TEXT, "lists.x", max_depth=50)


def chain(schema: Schema, values: list[int]) -> object:
    N = schema["node"]
    head = None
    for v in reversed(values):
        head = N(v=v, next=head)
    return head


def test_small_list_exact_bytes(schema: Schema) -> None:
    codec = schema["list"]
    value = chain(schema, [1, 2, 3])
    expected = be("I", 1) + be("iI", 1, 1) + be("iI", 2, 1) + be("iI", 3, 0)
    assert codec.pack(value) == expected
    assert codec.unpack(expected) == value
    assert codec.pack(None) == be("I", 0)
    assert codec.unpack(be("I", 0)) is None
    D, E = schema["dirlist3"], schema["entry3"]
    listing = D(
        entries=E(fileid=7, name="a", nextentry=E(fileid=8, name="bc", nextentry=None)), eof=True
    )
    data = be("IQI", 1, 7, 1) + b"a\0\0\0" + be("IQI", 1, 8, 2) + b"bc\0\0" + be("II", 0, 1)
    assert D.pack(listing) == data
    assert D.unpack(data) == listing


def test_a_million_entries_round_trip(schema: Schema) -> None:
    codec = schema["rpcblist_ptr"]
    R = schema["rp__list"]
    n = 1_000_000
    head = None
    for i in range(n):
        head = R(prog=i, addr="", rpcb_next=head)
    data = codec.pack(head)
    assert len(data) == 4 + n * 12
    back = codec.unpack(data)
    assert back == head  # equality walks the list in a loop too
    node, count = back, 0
    while node is not None:
        node, count = node.rpcb_next, count + 1
    assert count == n
    assert repr(back).startswith("rp__list(prog=999999, addr='', rpcb_next=rp__list(prog=999998")


def test_list_decoding_stays_strict(schema: Schema) -> None:
    codec = schema["list"]
    good = be("I", 1) + be("iI", 1, 1) + be("iI", 2, 1) + be("iI", 3, 0)
    bad_flag = good[:-4] + be("I", 2)
    with pytest.raises(DecodeError) as info:
        codec.unpack(bad_flag)
    assert info.value.path == "list.next[2].next"
    assert info.value.offset == 24
    assert "optional-data flag must be 0 or 1, not 2" in info.value.reason
    with pytest.raises(DecodeError, match=r"list\.next\[2\]\.next at byte offset 24: truncated"):
        codec.unpack(good[:-4])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.unpack(good + b"\0\0\0\0")


def test_list_encoding_errors_name_the_node(schema: Schema) -> None:
    N = schema["node"]
    value = N(v=1, next=N(v=2, next=N(v="x", next=None)))
    with pytest.raises(EncodeError) as info:
        schema["list"].pack(value)
    assert info.value.path == "list.next[2].v"
    with pytest.raises(EncodeError, match=r"list\.next\[1\]: struct node needs attribute 'v'"):
        schema["list"].pack(N(v=1, next=object()))


def test_cyclic_list_is_an_encode_error(schema: Schema) -> None:
    N = schema["node"]
    for length in (1, 2, 3, 50):
        head = tail = N(v=0, next=None)
        for i in range(1, length):
            tail.next = N(v=i, next=None)
            tail = tail.next
        tail.next = head if length < 50 else head.next.next  # back to the start, or later
        with pytest.raises(EncodeError, match="the list is cyclic"):
            schema["list"].pack(head)


def test_true_nesting_keeps_its_depth_limit(schema: Schema) -> None:
    T = schema["tree"]
    deep = None
    for i in range(60):
        deep = T(left=deep, v=i)
    with pytest.raises(EncodeError, match=r"nesting too deep \(more than 50 levels\)"):
        T.pack(deep)
    data = be("I", 1) * 60 + be("I", 0) + be("i", 0) * 60
    with pytest.raises(DecodeError, match=r"nesting too deep \(more than 50 levels\)"):
        T.unpack(data)
    shallow = None
    for i in range(50):
        shallow = T(left=shallow, v=i)
    assert T.unpack(T.pack(shallow)) == shallow
