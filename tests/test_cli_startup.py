"""What `xdrstream` imports before it does its work (start-up: every run pays it, and
issue 12's CPU columns include it). Each probe runs in a fresh interpreter and looks at
sys.modules; what a command imports later, when it runs, is not restricted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import xdrstream
from xdrstream.cli import COMMANDS

# the probes import the tree this test imported, whatever the working directory
TREE = str(Path(xdrstream.__file__).resolve().parent.parent)

# The engine, the codec's model and runtime, the event loop, TLS and rich: what a run
# needs, not its argument parsing.
HEAVY = (
    "xdrstream.protocol",
    "xdrstream.codec.model",
    "xdrstream.codec.runtime",
    "asyncio",
    "ssl",
    "rich",
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=TREE)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=TREE,
        env=env,
    )


def _loaded_after(code: str) -> set[str]:
    """The modules loaded after running `code` (which may exit, as argparse does)."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"{code}\n"
    )
    done = _run(probe)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _main(*argv: str) -> str:
    return f"from xdrstream.cli import main; main({list(argv)!r})"


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


def test_version_imports_no_command_module() -> None:
    loaded = _loaded_after(_main("--version"))
    assert "xdrstream.cli" in loaded
    assert sorted(set(COMMANDS.values()) & loaded) == []


def test_a_missing_command_is_a_usage_error_without_command_modules() -> None:
    loaded = _loaded_after(_main())
    assert sorted(set(COMMANDS.values()) & loaded) == []


def test_top_level_help_still_lists_every_command() -> None:
    code = _main("-h")
    done = _run(code)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("positional arguments:")[1]
    assert [c for c in COMMANDS if f"    {c}" not in listed] == []


def test_every_command_s_help_imports_neither_engine_nor_loop_nor_rich() -> None:
    for command, module in COMMANDS.items():
        loaded = _loaded_after(_main(command, "--help"))
        assert module in loaded
        assert _heavy(loaded) == [], command


def test_top_level_help_imports_neither_engine_nor_loop_nor_rich() -> None:
    loaded = _loaded_after(_main("-h"))
    assert set(COMMANDS.values()) <= loaded
    assert _heavy(loaded) == []


def test_no_terminal_means_no_rich() -> None:
    """Piped stdout: no progress bar, and rich is not even imported."""
    code = (
        "import os; os.environ.pop('FORCE_COLOR', None); os.environ.pop('TTY_COMPATIBLE', None)\n"
        "from xdrstream.restore.progress import Meter, terminal_console\n"
        "assert terminal_console() is None\n"
        "with Meter('save', 10, None) as meter: meter.advance(10)\n"
        "assert meter.bytes == 10"
    )
    loaded = _loaded_after(code)
    assert "xdrstream.restore.progress" in loaded
    assert [m for m in loaded if m.split(".")[0] == "rich"] == []


def test_forced_terminal_still_gets_rich_s_console() -> None:
    """FORCE_COLOR (rich's override) still makes a console, as rich decides."""
    code = (
        "import os; os.environ['FORCE_COLOR'] = '1'; os.environ.pop('TTY_COMPATIBLE', None)\n"
        "from xdrstream.restore.progress import terminal_console\n"
        "assert terminal_console() is not None"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
