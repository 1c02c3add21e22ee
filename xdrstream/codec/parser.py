"""Recursive-descent parser: tokens -> :mod:`xdrstream.codec.ast`.

Accepts RFC 4506 section 6 plus RFC 5531 section 12 (program/version/procedure) and the
rpcgen dialect: ``unsigned`` alone; the C integer types ``char``, ``short``, ``long`` and
their ``unsigned`` forms; inline ``struct``/``union``/``enum`` type specifiers in
declarations; ``struct NAME`` references; enum members without a value; string constants
(``const X = "...";``); and Stellar's ``namespace NAME { ... }`` blocks, whose definitions
join the specification as if written outside.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from xdrstream.codec import ast
from xdrstream.codec.errors import SchemaError
from xdrstream.codec.lexer import Token, tokenize

_DEFINITION_WORDS = frozenset({"const", "typedef", "struct", "union", "enum", "program"})
_ANNOTATION = re.compile(r"^[\s*]*@([A-Za-z_][A-Za-z0-9_.-]*)\s*(?::\s*(.*?))?\s*$")


def parse_annotations(comment: str | None) -> tuple[tuple[str, str], ...]:
    """``@name: value`` / ``@name`` lines of a comment (leading ``*`` and blanks ignored)."""
    if comment is None:
        return ()
    found: list[tuple[str, str]] = []
    for line in comment.splitlines():
        match = _ANNOTATION.match(line)
        if match:
            found.append((match.group(1), match.group(2) or ""))
    return tuple(found)


class Parser:
    def __init__(self, text: str, filename: str = "<schema>"):
        self.filename = filename
        self.tokens = tokenize(text, filename)
        self.i = 0

    # -- token helpers ---------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def pos(self, tok: Token | None = None) -> ast.Pos:
        t = tok or self.tok
        return ast.Pos(t.file, t.line, t.col)

    def error(self, message: str, tok: Token | None = None) -> SchemaError:
        t = tok or self.tok
        return SchemaError(message, t.file, t.line, t.col)

    def describe(self, tok: Token) -> str:
        return "end of file" if tok.kind == "eof" else repr(tok.text)

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def at_keyword(self, word: str) -> bool:
        return self.at("keyword", word)

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def expect(self, kind: str, what: str | None = None) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what or repr(kind)}, found {self.describe(self.tok)}")
        return self.advance()

    def expect_keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.error(f"expected {word!r}, found {self.describe(self.tok)}")
        return self.advance()

    def identifier(self, what: str = "an identifier") -> Token:
        if self.tok.kind == "keyword":
            raise self.error(f"expected {what}, found keyword {self.tok.text!r}")
        return self.expect("ident", what)

    @contextlib.contextmanager
    def inside(self, what: str, start: Token) -> Iterator[None]:
        """Errors within a definition name it; one found where another definition or the
        end of the file begins most likely means its ``}`` is missing: say so."""
        try:
            yield
        except SchemaError as exc:
            at = self.tok
            hint = ""
            starts_another = at.kind == "keyword" and at.text in _DEFINITION_WORDS
            if at.kind == "eof" or starts_another or exc.reason.startswith("a named "):
                hint = ": is its '}' missing?"
            where = f"{start.file}:{start.line}:{start.col}"
            raise SchemaError(
                f"{exc.reason} (in {what}, opened at {where}{hint})",
                exc.filename,
                exc.line,
                exc.col,
            ) from None

    # -- grammar -----------------------------------------------------------------------------

    def specification(self) -> ast.Specification:
        definitions: list[ast.Definition] = []
        self.definitions(definitions, None)
        return ast.Specification(self.filename, tuple(definitions))

    def definitions(self, out: list[ast.Definition], namespace: Token | None) -> None:
        """Definitions up to the end of the file (or the ``}`` closing a namespace)."""
        while not self.at("eof"):
            if namespace is not None and self.at("}"):
                self.advance()
                return
            t = self.tok
            if (
                t.kind == "ident"
                and t.text == "namespace"
                and self.tokens[self.i + 1].kind == "ident"
            ):
                self.advance()
                self.advance()
                self.expect("{", "'{'")
                self.definitions(out, t)
                continue
            out.append(self.definition())
        if namespace is not None:
            raise self.error("expected '}' closing the namespace", namespace)

    def definition(self) -> ast.Definition:
        t = self.tok
        pos = self.pos()
        if t.kind == "keyword":
            if t.text == "const":
                self.advance()
                name = self.identifier("a constant name").text
                self.expect("=", "'='")
                if self.at("string"):
                    literal = self.advance()
                    value = ast.Value(self.pos(literal), text=literal.text)
                else:
                    value = self.value(allow_name=True)
                self.expect(";", "';'")
                return ast.ConstDef(pos, name, value)
            if t.text == "typedef":
                self.advance()
                decl = self.declaration()
                if decl is None:
                    raise self.error("'typedef void' declares nothing", t)
                self.expect(";", "';'")
                return ast.TypeDef(pos, decl.name, decl.type)
            if t.text in ("struct", "union", "enum"):
                self.advance()
                name = self.identifier(f"a {t.text} name").text
                with self.inside(f"{t.text} {name}", t):
                    body = self.type_body(t.text, pos)
                self.expect(";", "';'")
                return ast.TypeDef(pos, name, body)
            if t.text == "program":
                with self.inside(f"program {self.tokens[self.i + 1].text}", t):
                    return self.program()
        raise self.error(
            "expected a definition (const, typedef, enum, struct, union, program), "
            f"found {self.describe(t)}"
        )

    def value(self, allow_name: bool = True) -> ast.Value:
        t = self.tok
        if t.kind == "number":
            self.advance()
            return ast.Value(self.pos(t), number=t.value)
        if allow_name and t.kind == "ident":
            self.advance()
            return ast.Value(self.pos(t), name=t.text)
        raise self.error(f"expected a constant, found {self.describe(t)}")

    def type_body(self, kind: str, pos: ast.Pos) -> ast.TypeSpec:
        if kind == "struct":
            return self.struct_body(pos)
        if kind == "union":
            return self.union_body(pos)
        return self.enum_body(pos)

    def enum_body(self, pos: ast.Pos) -> ast.EnumSpec:
        self.expect("{", "'{'")
        members: list[tuple[str, ast.Value, ast.Pos]] = []
        previous: ast.Value | None = None
        while True:
            name_tok = self.identifier("an enum member name")
            if self.at("="):
                self.advance()
                value = self.value()
            elif previous is None:
                value = ast.Value(self.pos(name_tok), number=0)
            else:
                # rpcgen extension: like C, one more than the previous member (a Value
                # with neither number nor name; the resolver computes it).
                value = ast.Value(self.pos(name_tok))
            members.append((name_tok.text, value, self.pos(name_tok)))
            previous = value
            if self.at(","):
                self.advance()
                if self.at("}"):  # tolerate a trailing comma
                    break
                continue
            break
        self.expect("}", "',' or '}'")
        return ast.EnumSpec(pos, tuple(members))

    def struct_body(self, pos: ast.Pos) -> ast.StructSpec:
        self.expect("{", "'{'")
        fields: list[ast.Declaration] = []
        while not self.at("}"):
            start = self.tok
            decl = self.declaration()
            if decl is None:
                raise self.error("'void' is not allowed as a struct member", start)
            self.expect(";", "';'")
            fields.append(decl)
        if not fields:
            raise self.error("a struct needs at least one member")
        self.advance()
        return ast.StructSpec(pos, tuple(fields))

    def union_body(self, pos: ast.Pos) -> ast.UnionSpec:
        self.expect_keyword("switch")
        self.expect("(", "'('")
        start = self.tok
        discriminant = self.declaration()
        if discriminant is None:
            raise self.error("the union discriminant cannot be void", start)
        self.expect(")", "')'")
        self.expect("{", "'{'")
        arms: list[ast.UnionArm] = []
        default: ast.UnionArm | None = None
        while not self.at("}"):
            arm_pos = self.pos()
            if self.at_keyword("default"):
                if default is not None:
                    raise self.error("a union has at most one 'default' arm")
                self.advance()
                self.expect(":", "':'")
                default = ast.UnionArm(arm_pos, (), self.declaration())
                self.expect(";", "';'")
                continue
            labels: list[ast.Value] = []
            while self.at_keyword("case"):
                self.advance()
                labels.append(self.value())
                self.expect(":", "':'")
            if not labels:
                raise self.error(
                    f"expected 'case', 'default' or '}}', found {self.describe(self.tok)}"
                )
            declaration = self.declaration()
            self.expect(";", "';'")
            arms.append(ast.UnionArm(arm_pos, tuple(labels), declaration))
        if not arms and default is None:
            raise self.error("a union needs at least one arm")
        self.advance()
        return ast.UnionSpec(pos, discriminant, tuple(arms), default)

    def type_specifier(self) -> ast.TypeSpec:
        t = self.tok
        pos = self.pos()
        if t.kind == "ident":
            self.advance()
            return ast.NamedSpec(pos, t.text)
        if t.kind != "keyword":
            raise self.error(f"expected a type, found {self.describe(t)}")
        word = t.text
        if word == "unsigned":
            self.advance()
            for size in ("int", "hyper", "char", "short", "long"):
                if self.at_keyword(size):
                    self.advance()
                    return ast.PrimSpec(pos, f"unsigned {size}")
            return ast.PrimSpec(pos, "unsigned int")  # rpcgen: ``unsigned`` alone
        if word in ("int", "hyper", "bool", "float", "double", "char", "short", "long"):
            self.advance()
            return ast.PrimSpec(pos, word)
        if word == "quadruple":
            raise self.error("'quadruple' (128-bit floating point) is unsupported")
        if word in ("struct", "union", "enum"):
            self.advance()
            if self.at("ident"):  # ``struct foo`` refers to a type defined elsewhere
                name = self.advance().text
                if self.at("{") or self.at_keyword("switch"):
                    raise self.error(f"a named {word} cannot be defined inside a declaration")
                return ast.NamedSpec(pos, name)
            return self.type_body(word, pos)
        raise self.error(f"expected a type, found keyword {word!r}")

    def declaration(self) -> ast.Declaration | None:
        """A declaration; ``None`` for ``void``."""
        t = self.tok
        pos = self.pos()
        if t.kind == "keyword" and t.text == "void":
            self.advance()
            return None
        if t.kind == "keyword" and t.text in ("opaque", "string"):
            self.advance()
            name = self.identifier("a name").text
            if t.text == "opaque" and self.at("["):
                self.advance()
                size = self.value()
                self.expect("]", "']'")
                return ast.Declaration(pos, name, ast.OpaqueSpec(pos, True, size))
            if not self.at("<"):
                expected = "'[' or '<'" if t.text == "opaque" else "'<'"
                raise self.error(f"expected {expected} after {t.text} {name}")
            bound = self.variable_bound()
            spec: ast.TypeSpec = (
                ast.OpaqueSpec(pos, False, bound)
                if t.text == "opaque"
                else ast.StringSpec(pos, bound)
            )
            return ast.Declaration(pos, name, spec)
        base = self.type_specifier()
        if self.at("*"):
            self.advance()
            name = self.identifier("a name").text
            return ast.Declaration(pos, name, ast.OptionalSpec(pos, base))
        name = self.identifier("a name").text
        if self.at("["):
            self.advance()
            size = self.value()
            self.expect("]", "']'")
            return ast.Declaration(pos, name, ast.ArraySpec(pos, base, True, size))
        if self.at("<"):
            return ast.Declaration(
                pos, name, ast.ArraySpec(pos, base, False, self.variable_bound())
            )
        return ast.Declaration(pos, name, base)

    def variable_bound(self) -> ast.Value | None:
        self.expect("<", "'<'")
        if self.at(">"):
            self.advance()
            return None
        size = self.value()
        self.expect(">", "'>'")
        return size

    def program(self) -> ast.ProgramDef:
        pos = self.pos()
        self.expect_keyword("program")
        name = self.identifier("a program name").text
        self.expect("{", "'{'")
        versions: list[ast.VersionDef] = []
        while not self.at("}"):
            versions.append(self.version())
        if not versions:
            raise self.error("a program needs at least one version")
        self.advance()
        self.expect("=", "'='")
        number = self.value()
        self.expect(";", "';'")
        return ast.ProgramDef(pos, name, number, tuple(versions))

    def version(self) -> ast.VersionDef:
        pos = self.pos()
        self.expect_keyword("version")
        name = self.identifier("a version name").text
        self.expect("{", "'{'")
        procedures: list[ast.ProcDef] = []
        while not self.at("}"):
            procedures.append(self.procedure())
        if not procedures:
            raise self.error("a version needs at least one procedure")
        self.advance()
        self.expect("=", "'='")
        number = self.value()
        self.expect(";", "';'")
        return ast.VersionDef(pos, name, number, tuple(procedures))

    def proc_type(self) -> ast.TypeSpec | None:
        if self.at_keyword("void"):
            self.advance()
            return None
        if self.at_keyword("string") or self.at_keyword("opaque"):
            t = self.advance()
            pos = self.pos(t)
            return (
                ast.StringSpec(pos, None)
                if t.text == "string"
                else ast.OpaqueSpec(pos, False, None)
            )
        return self.type_specifier()

    def procedure(self) -> ast.ProcDef:
        first = self.tok
        pos = self.pos()
        annotations = parse_annotations(first.comment)
        result = self.proc_type()
        name = self.identifier("a procedure name").text
        self.expect("(", "'('")
        args: list[ast.TypeSpec] = []
        arg = self.proc_type()
        if arg is not None:
            args.append(arg)
            while self.at(","):
                self.advance()
                more = self.proc_type()
                if more is None:
                    raise self.error("'void' must be the only procedure argument")
                args.append(more)
        self.expect(")", "')'")
        self.expect("=", "'='")
        number = self.value()
        self.expect(";", "';'")
        return ast.ProcDef(pos, name, number, result, tuple(args), annotations)


def parse(text: str, filename: str = "<schema>") -> ast.Specification:
    """Parse ``.x`` source text; raises :class:`SchemaError` naming file:line:col."""
    return Parser(text, filename).specification()
