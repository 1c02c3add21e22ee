"""Hand-written lexer for the RFC 4506 / RFC 5531 XDR language.

Comments (``/* ... */``) are skipped, but the text of a comment followed by nothing but
whitespace is attached to the next token (``Token.comment``) so the parser can read
procedure annotations. Lines whose first non-blank character is ``%`` are rpcgen
pass-through lines and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdrstream.codec.errors import SchemaError

KEYWORDS = frozenset(
    {
        "bool",
        "case",
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


def tokenize(text: str, filename: str = "<schema>") -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    line = 1
    line_start = 0
    at_line_start = True  # only whitespace seen so far on this line
    pending_comment: str | None = None

    def error(message: str, pos: int) -> SchemaError:
        # Compute line/col for ``pos`` (may lie on a later line than ``line``).
        ln = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return SchemaError(message, filename, ln, col)

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
        if c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT_REST:
                j += 1
            word = text[i:j]
            kind = "keyword" if word in KEYWORDS else "ident"
            tokens.append(Token(kind, word, line, col, comment=pending_comment))
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
                    line,
                    col,
                    -value if negative else value,
                    pending_comment,
                )
            )
            i = k
        elif c in PUNCTUATION:
            tokens.append(Token(c, c, line, col, comment=pending_comment))
            i += 1
        else:
            raise error(f"unexpected character {c!r}", i)
        pending_comment = None
    col = i - line_start + 1
    tokens.append(Token("eof", "", line, col, comment=pending_comment))
    return tokens
