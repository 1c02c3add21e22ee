"""Lexer: tokens, constants in every base, comments, pass-through lines, positions."""

from __future__ import annotations

import pytest

from xdrstream.codec import SchemaError
from xdrstream.codec.lexer import tokenize


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(text)][:-1]


def test_identifiers_keywords_and_punctuation() -> None:
    assert kinds("struct foo_1 { unsigned hyper x<>; };") == [
        ("keyword", "struct"),
        ("ident", "foo_1"),
        ("{", "{"),
        ("keyword", "unsigned"),
        ("keyword", "hyper"),
        ("ident", "x"),
        ("<", "<"),
        (">", ">"),
        (";", ";"),
        ("}", "}"),
        (";", ";"),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("0x1F", 31),
        ("0XfF", 255),
        ("017", 15),
        ("-0x10", -16),
        ("4294967295", 4294967295),
    ],
)
def test_numbers_in_all_bases(text: str, value: int) -> None:
    (token,) = [t for t in tokenize(text) if t.kind == "number"]
    assert token.value == value


def test_comments_and_pass_through_lines_are_skipped() -> None:
    text = "%#include <foo.h>\n  % indented too\nconst /* a\n comment */ A = 1; // C++ too\n"
    assert kinds(text) == [
        ("keyword", "const"),
        ("ident", "A"),
        ("=", "="),
        ("number", "1"),
        (";", ";"),
    ]


def test_percent_in_the_middle_of_a_line_is_an_error() -> None:
    with pytest.raises(SchemaError, match=r"f\.x:1:9: unexpected character '%'"):
        tokenize("const A %= 1;", "f.x")


def test_positions_count_lines_and_columns_from_one() -> None:
    tokens = tokenize("/* x\n y */\n  struct\n\tfoo")
    assert [(t.text, t.line, t.col) for t in tokens[:2]] == [("struct", 3, 3), ("foo", 4, 2)]


def test_comment_right_before_a_token_is_attached() -> None:
    tokens = tokenize("/* first */ a /* second */\n\n b c")
    assert [t.comment for t in tokens[:3]] == [" first ", " second ", None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/* never closed", r"x\.x:1:1: unterminated comment"),
        ("a\n  0x;", r"x\.x:2:3: hexadecimal constant needs at least one digit"),
        ("const A = 09;", r"x\.x:1:11: invalid octal constant '09'"),
        ("const A = 12ab;", r"x\.x:1:13: invalid character 'a' in number"),
        ("struct é", r"x\.x:1:8: unexpected character 'é'"),
    ],
)
def test_lexer_errors_name_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message) as info:
        tokenize(text, "x.x")
    assert info.value.filename == "x.x"
