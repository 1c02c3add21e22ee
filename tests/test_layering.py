"""The package's layering (README "Layout"), checked on the source with :mod:`ast`.

* Each top-level package imports only the packages below it (``ALLOWED``), which must form
  no cycle. The ``commands`` modules that :data:`xdrstream.cli.COMMANDS` wires in
  (and the ``*_commands`` modules they delegate to) are the command line's layer: it
  composes all the others, so they may import any package.
* ``codec`` and ``protocol`` do no I/O: they import no socket, event-loop, process, thread or
  file module and call no ``open``; ``protocol.schemas`` alone reads its package data.
* No module uses another module's private (``_name``) names, and a private module
  (``protocol/_state.py``) is used only inside its own package.

Each breach is reported as ``file:line: what``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xdrstream.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xdrstream"

# package -> the packages it builds on (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "codec": frozenset(),
    "protocol": frozenset({"codec"}),
    "capture": frozenset({"codec", "protocol"}),
    "transport": frozenset({"codec", "protocol"}),
    "endpoints": frozenset(),  # bytes in and out of processes: no RPC knowledge
    "restore": frozenset({"codec", "protocol", "transport", "endpoints"}),
    "libvirt": frozenset({"codec", "protocol", "transport"}),
    "conformance": frozenset(
        {"codec", "protocol", "capture", "transport", "restore", "endpoints", "libvirt"}
    ),
    "fuzz": frozenset({"codec", "protocol", "capture", "conformance", "libvirt"}),
}
# Modules of the package root compose every layer.
TOP = frozenset({"xdrstream", "xdrstream.cli", "xdrstream.demo"})

# What "no I/O" rules out (spec.md §12: the engine is sans-I/O).
IO_MODULES = frozenset(
    {
        "asyncio", "concurrent", "fcntl", "io", "mmap", "multiprocessing", "os", "pathlib",
        "select", "selectors", "shutil", "signal", "socket", "socketserver", "ssl",
        "subprocess", "tempfile", "threading",
    }
)  # fmt: skip
NO_IO = ("xdrstream.codec", "xdrstream.protocol")
# Reading the schemas shipped as package data is loading code, not I/O with a peer.
IO_EXEMPT = frozenset({"xdrstream.protocol.schemas"})
# The codec compiles files and runs a C preprocessor over them: its file-facing modules.
CODEC_FILES = frozenset({"xdrstream.codec", "xdrstream.codec.cpp", "xdrstream.codec.commands"})


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the module imported from (absolute)
    names: tuple[str, ...]  # names taken from it (empty for ``import X``)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    def where(self, line: int) -> str:
        return f"{self.path.relative_to(ROOT)}:{line}"


def modules() -> Iterator[Module]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield Module(".".join(parts), path, ast.parse(path.read_text(encoding="utf-8")))


def imports(module: Module) -> Iterator[Import]:
    """Every import, at any depth (lazy imports in functions count)."""
    is_package = module.path.name == "__init__.py"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(node.lineno, base, tuple(alias.name for alias in node.names))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(node.lineno, node.args[0].value, ())


def package_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if parts[0] == "xdrstream" and len(parts) > 1 else None


def upward_imports() -> list[str]:
    found = []
    for module in modules():
        if module.name in TOP or module.name in COMMANDS.values() or _is_cli(module.name):
            continue
        own = package_of(module.name)
        assert own in ALLOWED, f"{module.where(1)}: package {own!r} is missing from ALLOWED"
        for imp in imports(module):
            # ``from xdrstream import codec`` names the package in the imported names
            dotted = [imp.module] if imp.module != "xdrstream" else [
                f"xdrstream.{name}" for name in imp.names
            ]  # fmt: skip
            for target in filter(None, map(package_of, dotted)):
                if target != own and target not in ALLOWED[own]:
                    below = ", ".join(sorted(ALLOWED[own])) or "nothing"
                    found.append(
                        f"{module.where(imp.line)}: {own} imports xdrstream.{target}"
                        f" ({own} builds on {below})"
                    )
    return found


def _is_cli(name: str) -> bool:
    """A module the command modules delegate to (``conformance.report_commands``)."""
    return name.rsplit(".", 1)[-1].endswith("_commands")


def io_imports() -> list[str]:
    found = []
    for module in modules():
        if not module.name.startswith(NO_IO) or module.name in IO_EXEMPT:
            continue
        allowed: frozenset[str] = frozenset()
        if module.name in CODEC_FILES:
            allowed = frozenset({"os", "io", "pathlib", "threading"})
        for imp in imports(module):
            root = imp.module.split(".")[0]
            if root in IO_MODULES and root not in allowed:
                found.append(
                    f"{module.where(imp.line)}: {module.name} imports {imp.module} (no I/O)"
                )
        if module.name in CODEC_FILES:
            continue
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "open"
            ):
                found.append(f"{module.where(node.lineno)}: {module.name} calls open() (no I/O)")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports() -> list[str]:
    found = []
    for module in modules():
        own = module.name.split(".")
        bound: dict[str, str] = {}  # local name -> imported xdrstream module
        for imp in imports(module):
            if not imp.module.startswith("xdrstream"):
                continue
            parts = imp.module.split(".")
            # A private module may be used by its own package only.
            for i, part in enumerate(parts):
                if _private(part) and own[:i] != parts[:i]:
                    what = f"{module.name} imports private module {imp.module}"
                    found.append(f"{module.where(imp.line)}: {what}")
                    break
            for name in imp.names:
                target = f"{imp.module}.{name}"
                if _private(name) and not _is_own_private_module(module, target):
                    found.append(
                        f"{module.where(imp.line)}: {module.name} imports private {target}"
                    )
                bound[name] = target
        # module._name through an imported module object
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _is_module(bound[node.value.id])
            ):
                found.append(
                    f"{module.where(node.lineno)}: {module.name} uses private "
                    f"{bound[node.value.id]}.{node.attr}"
                )
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_own_private_module(module: Module, target: str) -> bool:
    """``from xdrstream.protocol import _bodies`` inside xdrstream.protocol."""
    if not _is_module(target):
        return False
    package = target.rsplit(".", 1)[0]
    return module.name == package or module.name.startswith(package + ".")


def test_allowed_layers_form_no_cycle() -> None:
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        if seen.get(node) == 1:
            pytest.fail(f"ALLOWED has a cycle: {' -> '.join([*path, node])}")
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for below in sorted(ALLOWED[node]):
            visit(below, [*path, node])
        seen[node] = 2

    for package in ALLOWED:
        visit(package, [])


def test_every_package_is_placed() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED), "README's layers and ALLOWED must name every package"


def test_the_checks_read_the_whole_package() -> None:
    names = {module.name for module in modules()}
    assert {"xdrstream.codec.runtime", "xdrstream.protocol.connection", "xdrstream.cli"} <= names
    assert len(names) > 50


def test_no_upward_import() -> None:
    assert upward_imports() == []


def test_codec_and_protocol_do_no_io() -> None:
    assert io_imports() == []


def test_no_private_name_across_modules() -> None:
    assert private_imports() == []


# -- the checks catch what they are for ------------------------------------------------------


def _module(name: str, source: str, file: str = "mod.py") -> Module:
    return Module(name, PACKAGE / file, ast.parse(source))


def test_checker_sees_upward_lazy_and_relative_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [
        _module("xdrstream.protocol.bad", "def f():\n    from xdrstream.transport import aio\n"),
        _module("xdrstream.codec.worse", "from ..protocol import framing\n"),
        _module(
            "xdrstream.codec.dyn", "import importlib\nimportlib.import_module('xdrstream.fuzz')\n"
        ),
        _module("xdrstream.protocol.fine", "from xdrstream.codec import load_schema\n"),
    ]
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: iter(fake))
    found = upward_imports()
    assert [f.split(": ", 1)[1].split(" (")[0] for f in found] == [
        "protocol imports xdrstream.transport",
        "codec imports xdrstream.protocol",
        "codec imports xdrstream.fuzz",
    ]
    assert found[0].startswith("xdrstream/mod.py:2: ")


def test_checker_sees_io_and_private_names(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [
        _module("xdrstream.protocol.bad", "import socket\nfrom asyncio import sleep\nopen('x')\n"),
        _module("xdrstream.transport.blocking", "from xdrstream.transport.aio import _advance\n"),
        _module(
            "xdrstream.transport.server", "from xdrstream.transport import aio\naio._resolve()\n"
        ),
        _module("xdrstream.capture.decode", "from xdrstream.protocol import _bodies\n"),
        _module("xdrstream.protocol.connection", "from xdrstream.protocol import _bodies\n"),
    ]
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: iter(fake))
    assert [f.split(": ", 1)[1] for f in io_imports()] == [
        "xdrstream.protocol.bad imports socket (no I/O)",
        "xdrstream.protocol.bad imports asyncio (no I/O)",
        "xdrstream.protocol.bad calls open() (no I/O)",
    ]
    assert [f.split(": ", 1)[1] for f in private_imports()] == [
        "xdrstream.transport.blocking imports private xdrstream.transport.aio._advance",
        "xdrstream.transport.server uses private xdrstream.transport.aio._resolve",
        "xdrstream.capture.decode imports private xdrstream.protocol._bodies",
    ]
