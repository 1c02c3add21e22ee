"""Hand-written lexer for the RFC 4506 / RFC 5531 XDR language.

Comments (``/* ... */`` and ``// ...``) are skipped, but the text of a ``/* */`` comment
followed by nothing but whitespace is attached to the next token (``Token.comment``) so the
parser can read procedure annotations. Lines whose first non-blank character is ``%`` are
rpcgen pass-through lines and are ignored. Lines starting with ``#`` are the line markers a C
preprocessor writes (``# 12 "file.x"``, ``#line 12 "file.x"``): they set the file and line
that later tokens report (``Token.file``); ``#pragma`` lines are ignored; any other ``#``
line means the text was not preprocessed and is an error. String literals (``"..."``, for
rpcgen's string constants) are tokens of kind ``"string"`` whose ``text`` is the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xdrstream.codec.errors import SchemaError

KEYWORDS = frozenset(
    {
        "bool",
        "case",
        "char",
        "long",
        "short",
        "const",
        "default",
        "double",
        "quadruple",
        "enum",
        "float",
        "hyper",
        "int",
        "opaque",
        "string",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "program",
        "version",
    }
)

PUNCTUATION = frozenset("{}()[]<>;,=:*")

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_REST = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_SPACE = frozenset(" \t\r\n\f\v")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident", "keyword", "number", a punctuation character, or "eof"
    text: str
    line: int
    col: int
    value: int = 0  # for numbers
    comment: str | None = None  # comment immediately before this token (whitespace only between)
    file: str = "<schema>"  # the file the token comes from (line markers may change it)


_LINE_MARKER = re.compile(r'#\s*(?:line\s+)?(\d+)(?:\s+"((?:[^"\\]|\\.)*)")?[^\n]*')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    """C escapes of a string literal (the common ones; others keep the character)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def tokenize(text: str, filename: str = "<schema>") -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    line = 1
    line_start = 0
    at_line_start = True  # only whitespace seen so far on this line
    pending_comment: str | None = None
    file = filename
    line_delta = 0  # reported line = physical line + line_delta (set by line markers)

    def error(message: str, pos: int) -> SchemaError:
        # Compute line/col for ``pos`` (may lie on a later line than ``line``).
        ln = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return SchemaError(message, file, ln + line_delta, col)

    while i < n:
        c = text[i]
        if c in _SPACE:
            if c == "\n":
                line += 1
                line_start = i + 1
                at_line_start = True
            i += 1
            continue
        if c == "%" and at_line_start:
            end = text.find("\n", i)
            i = n if end < 0 else end
            pending_comment = None
            continue
        if c == "#" and at_line_start:
            end = text.find("\n", i)
            end = n if end < 0 else end
            directive = text[i:end]
            marker = _LINE_MARKER.fullmatch(directive)
            if marker:
                # The next physical line is line ``marker[1]`` of file ``marker[2]``.
                line_delta = int(marker[1]) - (line + 1)
                if marker[2] is not None:
                    file = _unescape(marker[2])
            elif not directive[1:].lstrip().startswith("pragma"):
                raise error(
                    "preprocessor line: the text must go through a C preprocessor first "
                    "(load_schema and compile_schema do that when given the file's text)",
                    i,
                )
            i = end
            pending_comment = None
            continue
        if c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise error("unterminated comment", i)
            body = text[i + 2 : end]
            newlines = body.count("\n")
            if newlines:
                line += newlines
                line_start = i + 2 + body.rfind("\n") + 1
            pending_comment = body
            i = end + 2
            at_line_start = False
            continue
        at_line_start = False
        col = i - line_start + 1
        ln = line + line_delta
        if c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT_REST:
                j += 1
            word = text[i:j]
            kind = "keyword" if word in KEYWORDS else "ident"
            tokens.append(Token(kind, word, ln, col, comment=pending_comment, file=file))
            i = j
        elif c in _DIGITS or (c == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            j = i + 1 if c == "-" else i
            negative = c == "-"
            if text.startswith(("0x", "0X"), j):
                k = j + 2
                while k < n and text[k] in _HEX:
                    k += 1
                if k == j + 2:
                    raise error("hexadecimal constant needs at least one digit", i)
                value = int(text[j + 2 : k], 16)
            else:
                k = j
                while k < n and text[k] in _DIGITS:
                    k += 1
                digits = text[j:k]
                if len(digits) > 1 and digits[0] == "0":
                    if any(d in "89" for d in digits):
                        raise error(f"invalid octal constant {digits!r}", i)
                    value = int(digits, 8)
                else:
                    value = int(digits)
            if k < n and text[k] in _IDENT_REST:
                raise error(f"invalid character {text[k]!r} in number", k)
            tokens.append(
                Token(
                    "number",
                    text[i:k],
                    ln,
                    col,
                    -value if negative else value,
                    pending_comment,
                    file,
                )
            )
            i = k
        elif c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            if j >= n or text[j] != '"':
                raise error("unterminated string constant", i)
            literal = _unescape(text[i + 1 : j])
            tokens.append(Token("string", literal, ln, col, comment=pending_comment, file=file))
            i = j + 1
        elif c in PUNCTUATION:
            tokens.append(Token(c, c, ln, col, comment=pending_comment, file=file))
            i += 1
        else:
            raise error(f"unexpected character {c!r}", i)
        pending_comment = None
    col = i - line_start + 1
    tokens.append(Token("eof", "", line + line_delta, col, comment=pending_comment, file=file))
    return tokens
