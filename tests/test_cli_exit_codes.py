"""One exit status rule across commands (xdrstream.cli.EXIT_STATUS): a local file that cannot
be read or written is exit 2 for every command, content that fails is exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdrstream.cli import EXIT_STATUS, build_parser, main


@pytest.mark.parametrize(
    "command",
    [
        ["compile", "{missing}"],
        ["decode", "{missing}"],
        ["restore", "{missing}", "--connect", "unix:{tmp}/none.sock"],
    ],
)
def test_an_unreadable_input_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "missing.x"
    argv = [a.format(missing=missing, tmp=tmp_path) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "No such file or directory" in err
    assert "[Errno" not in err  # the reason once, not the exception's repr


@pytest.mark.parametrize(
    "command", [["compile", "{broken}"], ["decode", "--schema", "{broken}", "{broken}"]]
)
@pytest.mark.parametrize(
    ("content", "said"),
    [(b"struct x { int a", ""), (b"/* caf\xe9 */ struct s { int x; };\n", "not UTF-8 text")],
)
def test_a_schema_that_does_not_compile_is_exit_1(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    content: bytes,
    said: str,
) -> None:
    """A file that was read but whose content fails, also one that is not UTF-8."""
    broken = tmp_path / "broken.x"
    broken.write_bytes(content)
    assert main([a.format(broken=broken) for a in command]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err and said in err


def test_decode_with_a_bad_define_is_a_usage_error_before_the_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.bin"
    assert main(["decode", "-D", "1x=2", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "-D 1x=2: '1x' is not a name" in err and "schema" not in err and "missing" not in err


def test_trace_show_of_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    assert main(["trace", "show", str(tmp_path / "missing.jsonl")]) == 2


def test_trace_show_of_a_binary_file_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "capture.pcapng"
    capture.write_bytes(bytes.fromhex("0a0d0d0a") + b"\xff" * 40)
    assert main(["trace", "show", str(capture)]) == 1  # read, but not a trace: content
    err = capsys.readouterr().err
    assert f"{capture}: not a trace (JSON Lines): byte 4 is not UTF-8" in err


def test_compile_exit_status_input_output_and_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = tmp_path / "ok.x"
    ok.write_text("struct s { int x; };\n")
    out = tmp_path / "no" / "dir" / "mod.py"
    assert main(["compile", str(ok), "-o", str(out)]) == 2
    assert f"xdrstream compile: cannot write {out}: No such file or directory" in (
        capsys.readouterr().err
    )
    latin = tmp_path / "latin.x"
    latin.write_bytes(b"/* caf\xe9 */ struct s { int x; };\n")
    assert main(["compile", str(latin)]) == 1  # read, but not text: content, as decode's
    assert f"xdrstream compile: {latin}: not UTF-8 text (byte 6)" in capsys.readouterr().err
    bad = tmp_path / "bad.x"
    bad.write_text("struct s { int x }\n")
    assert main(["compile", str(bad)]) == 1  # the input's content: the work failed


def test_the_rule_is_in_the_top_level_help() -> None:
    assert EXIT_STATUS in build_parser().format_help()
    assert "2    usage, or a local file that cannot be read or written" in EXIT_STATUS


@pytest.mark.timeout(60)
def test_a_target_that_does_not_accept_connections_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"unix:{tmp_path}/none.sock"
    assert main(["fuzz", "--target", target, "--duration", "1s"]) == 3
    assert main(["conformance", "run", "--target", target]) == 3
    assert main(["restore", str(Path(__file__)), "--connect", target]) == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.count(target) == 1 for line in lines), lines


@pytest.mark.timeout(60)
def test_more_commands_name_an_unreachable_peer_once_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    none = f"unix:{tmp_path}/none.sock"
    listen = f"unix:{tmp_path}/listen.sock"
    commands = [
        ["fuzz", "--target", none, "--campaign", "resources", "--pid", "1"],
        ["conformance", "exactness", "--connect", none],
        ["conformance", "judge", "--listen", listen, "--upstream", none],
        ["trace", "record", "--listen", listen, "--upstream", none, "-o", f"{tmp_path}/t"],
    ]
    for argv in commands:
        assert main(argv) == 3, argv
        err = capsys.readouterr().err
        assert err.count(none) == 1 and len(err.splitlines()) == 1, err
    assert "xdrstream trace: error: cannot connect to the upstream: no such socket" in err
    assert not Path(f"{tmp_path}/listen.sock").exists()  # nothing left listening
    nodir = f"unix:{tmp_path}/no/dir.sock"
    import socket

    with socket.socket(socket.AF_UNIX) as upstream:  # reachable: the listen is what fails
        upstream.bind(f"{tmp_path}/up.sock")
        upstream.listen()
        up = f"unix:{tmp_path}/up.sock"
        for argv in (["conformance", "judge", "--listen", nodir, "--upstream", up],
                     ["trace", "record", "--listen", nodir, "--upstream", up, "-o", "t"],
                     ["conformance", "serve", "--listen", nodir]):  # fmt: skip
            assert main(argv) == 3, argv  # could not listen
            assert f"{tmp_path}/no/dir.sock" in capsys.readouterr().err, argv


def test_fuzz_resources_with_no_such_pid_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        code = main(["fuzz", "--target", f"unix:{path}", "--campaign", "resources",
                     "--pid", "999999999"])  # fmt: skip
    assert code == 2
    assert "xdrstream fuzz: --pid 999999999: no such process" in capsys.readouterr().err


def test_fuzz_replay_of_a_missing_trace_is_exit_2_of_a_bad_one_exit_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"unix:{tmp_path}/none.sock"  # never reached: the file is checked first
    missing, bad = tmp_path / "missing.jsonl", tmp_path / "bad.jsonl"
    bad.write_bytes(b"\x89PNG\r\n")
    assert main(["fuzz", "--target", target, "--replay", str(missing)]) == 2
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err
    assert main(["fuzz", "--target", target, "--replay", str(bad)]) == 1  # its content
    assert f"{bad}: not a trace (JSON Lines): byte 0 is not UTF-8" in capsys.readouterr().err
    # A bad option beside the bad file is usage, said first.
    for option in (["--duration", "soon"], ["--timeout=-1s"], ["--max-findings", "0"]):
        assert main(["fuzz", "--target", target, *option, "--replay", str(bad)]) == 2, option
        err = capsys.readouterr().err
        assert option[0].split("=")[0] in err and "not a trace" not in err, err
    broken = tmp_path / "broken.x"  # a --libvirt-schemas file that does not compile
    broken.write_text("struct x { int a")
    argv = ["fuzz", "--target", target, "--procedure", "CONNECT_OPEN"]
    assert main([*argv, "--libvirt-schemas", str(broken)]) == 1
    assert str(broken) in capsys.readouterr().err
    assert main([*argv[:3], "--procedure", "NO_SUCH_PROCEDURE"]) == 2
    assert "has no procedure 'NO_SUCH_PROCEDURE'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--campaign", "resources", "--pid", "999999999"], "--pid 999999999: no such process"),
        (["--campaign", "resources"], "--campaign resources needs --spawn or --pid"),
        (["--pid", "1"], "--pid goes with --campaign resources"),
        (["--campaign", "resources", "--pid", "1", "--replay", "t"], "--replay sends"),
        (["--campaign", "resources", "--connections", "0", "--pid", "1"], "--connections"),
        (["--spawn", "'unbalanced"], '--spawn "\'unbalanced": No closing quotation'),
        (["--spawn", "/nonexistent/server --x"], "--spawn: '/nonexistent/server' is no program"),
        (["--spawn", " "], "--spawn needs a command"),
    ],
)
def test_fuzz_options_that_cannot_work_are_exit_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    """Checked before the target is reached (it is not there: that would be exit 3) and
    before --spawn's command runs (it would leave a file)."""
    started = tmp_path / "started"
    argv = ["fuzz", "--target", f"unix:{tmp_path}/none.sock", "--duration", "1s", *options]
    assert main([*argv, "--spawn", f"touch {started}"] if "--pid" in options else argv) == 2
    err = capsys.readouterr().err
    assert f"xdrstream fuzz: {said}" in err and len(err.splitlines()) == 1, err
    assert not started.exists()


def test_decode_with_a_directory_that_is_no_libvirt_tree_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "empty.bin"
    stream.write_bytes(b"")
    assert main(["decode", "--libvirt-schemas", str(tmp_path), str(stream)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: neither a libvirt source tree" in err and "None" not in err


def _exit_status(argv: list[str]) -> int:
    """main's status, also when argparse rejects a value (it exits 2 itself)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["conformance", "judge", "--listen", "{listen}", "--upstream", "tls:127.0.0.1:1"],
         "a TLS session cannot be judged"),
        (["conformance", "judge", "--listen", "tls:127.0.0.1:0", "--upstream", "{none}"],
         "a TLS session cannot be judged"),
        (["trace", "record", "--listen", "{listen}", "--upstream", "tls:127.0.0.1:1",
          "-o", "{tmp}/t.jsonl"], "a TLS session cannot be recorded"),
        (["conformance", "judge", "--listen", "{listen}", "--upstream", "{none}", "--count", "0"],
         "argument --count: must be positive"),
        (["conformance", "judge", "--listen", "{listen}", "--upstream", "{none}",
          "--timeout", "0"], "argument --timeout: 0 is not a positive number of seconds"),
        (["trace", "record", "--listen", "{listen}", "--upstream", "{none}", "--sessions", "0",
          "-o", "{tmp}/t.jsonl"], "argument --sessions: must be positive"),
        (["conformance", "serve", "--listen", "{listen}", "--count", "-1"],
         "argument --count: -1 is negative"),
        (["conformance", "serve", "--listen", "{listen}", "--timeout", "nan"],
         "argument --timeout: nan is not a positive number"),
        (["conformance", "run", "--target", "{none}", "--timeout", "-1"],
         "argument --timeout: -1 is not a positive number"),
        (["conformance", "replay", "--target", "{none}", "--timeout", "0"],
         "argument --timeout: 0 is not a positive number"),
        (["conformance", "exactness", "--connect", "{none}", "--timeout", "0"],
         "argument --timeout: 0 is not a positive number"),
    ],
)  # fmt: skip
def test_conformance_options_that_cannot_work_are_exit_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    """Said before anything listens or connects: the upstream/target is not there (that
    would be exit 3, or a traceback for a negative timeout) and no socket is made."""
    listen = tmp_path / "listen.sock"
    values = {"listen": f"unix:{listen}", "none": f"unix:{tmp_path}/none.sock", "tmp": tmp_path}
    assert _exit_status([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err
    assert not listen.exists()


def test_exactness_of_libvirt_schemas_that_do_not_compile_is_exit_1_unreadable_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken, missing = tmp_path / "remote_protocol.x", tmp_path / "missing.x"
    broken.write_text("struct x { int a")
    argv = ["conformance", "exactness", "--connect", f"unix:{tmp_path}/none.sock"]
    assert main([*argv, "--libvirt-schemas", str(broken)]) == 1  # not reached: exit 3
    assert f"cannot load the remote program: {broken}" in capsys.readouterr().err
    assert main([*argv, "--libvirt-schemas", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
