"""``xdrstream conformance run/replay/serve`` and ``xdrstream trace show/export``."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from broken_servers import BrokenServer, Fault

from xdrstream.cli import main
from xdrstream.conformance import replay
from xdrstream.restore.client import Client
from xdrstream.transport import address as addresses
from xdrstream.transport.options import Options


def test_list_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "run", "--list", "--cases", "7.3.*"]) == 0
    out = capsys.readouterr().out
    assert "7.3.1/2" in out and "7.4.1/1" not in out
    assert "expect:" in out


def test_run_writes_junit_and_json_and_passes(
    reference_server: addresses.Address, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    code = main([
        "conformance", "run", "--target", str(reference_server), "--cases", "4.*",
        "--cases", "7.3.2/2", "--cases", "3.6/1", "--exclude", "4.6/1",
        "--junit", str(junit), "--json", str(report),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4.4.2/3" in out and "(restore)" in out
    document = json.loads(report.read_text())
    assert document["program"] == "restore"
    ids = {r["id"]: r for r in document["results"]}
    assert "4.6/1" not in ids and ids["4.3.2/1"]["outcome"] == "pass"
    assert ids["3.6/1"]["outcome"] == "pass" and ids["4.4.2/4"]["outcome"] == "pass"
    assert ids["7.3.2/2"]["outcome"] == "skip" and "libvirt" in ids["7.3.2/2"]["detail"]
    assert document["summary"]["fail"] == 0
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(ids)
    assert root.find(".//testsuite[@name='§4.3.2']") is not None
    skipped = {k for k, r in ids.items() if r["outcome"] == "skip"}
    assert len(root.findall(".//skipped")) == len(skipped)
    assert all("libvirt" in ids[k]["detail"] for k in skipped)  # the libvirt-only cases


def test_run_fails_with_exit_1_and_reports_the_failure(
    reference_server: addresses.Address, short_dir: Path, tmp_path: Path
) -> None:
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    with BrokenServer(Fault.SERIAL_IN_USE, reference_server, short_dir / "cli.sock") as broken:
        code = main([
            "conformance", "run", "--target", str(broken.address), "--cases", "4.3.*",
            "--timeout", "2", "--junit", str(junit), "--json", str(report),
        ])  # fmt: skip
    assert code == 1
    results = {r["id"]: r for r in json.loads(report.read_text())["results"]}
    assert results["4.3.2/1"]["outcome"] == "fail"
    assert "answered instead of closing" in results["4.3.2/1"]["detail"]
    assert results["4.3.2/2"]["outcome"] == "pass"
    failure = ET.parse(junit).getroot().find(".//testcase/failure")
    assert failure is not None and "§4.3.2" in (failure.text or "")


def test_should_cases_run_only_with_strict(
    reference_server: addresses.Address, tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    assert main(["conformance", "run", "--target", str(reference_server), "--cases", "5/1",
                 "--json", str(report)]) == 0  # fmt: skip
    [result] = json.loads(report.read_text())["results"]
    assert result["outcome"] == "skip" and "--strict" in result["detail"]
    assert main(["conformance", "run", "--target", str(reference_server), "--cases", "5/1",
                 "--strict", "--json", str(report)]) == 0  # fmt: skip
    [result] = json.loads(report.read_text())["results"]
    assert result["outcome"] == "pass"


def test_unreachable_target_and_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conformance", "run", "--target", f"unix:{tmp_path / 'none.sock'}"]) == 3
    assert "cannot connect" in capsys.readouterr().err
    assert main(["conformance", "run"]) == 2
    assert main(["conformance", "run", "--target", "bogus"]) == 2
    assert main(["conformance", "run", "--target", "tcp:127.0.0.1:1", "--cases", "99.*"]) == 2
    capsys.readouterr()
    # a named program is no excuse to fail every case: unreachable is 3 there too
    none = f"unix:{tmp_path / 'none.sock'}"
    assert main(["conformance", "run", "--target", none, "--program", "libvirt"]) == 3
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.parametrize("program", ["auto", "restore", "libvirt"])
def test_an_unreachable_target_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], program: str
) -> None:
    target = f"unix:{tmp_path / 'none.sock'}"
    for action in ("run", "replay"):
        assert main(["conformance", action, "--target", target, "--program", program]) == 3
        err = capsys.readouterr().err
        assert err.count(target) == 1 and "no such socket" in err, err
        assert len(err.splitlines()) == 1, err  # one line, not a failed row per trace


def test_replay_of_a_missing_trace_is_a_usage_error_of_a_bad_one_exit_1_naming_it(
    reference_server: addresses.Address, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = str(replay.traces_dir() / "v3-upload.jsonl")
    missing = tmp_path / "missing.jsonl"
    target = str(reference_server)
    assert main(["conformance", "replay", "--target", target, good, str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"cannot read {missing}: No such file or directory" in captured.err
    assert "[Errno" not in captured.err and "replayed" not in captured.out  # nothing ran
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": \n')
    assert main(["conformance", "replay", "--target", target, str(bad)]) == 1  # content
    assert f"{bad}: trace line 1: not JSON" in capsys.readouterr().err
    assert main(["conformance", "serve", "--listen", f"unix:{tmp_path}/s", str(bad)]) == 1
    assert f"{bad}: trace line 1: not JSON" in capsys.readouterr().err
    assert main(["conformance", "serve", "--listen", f"unix:{tmp_path}/s", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err


def test_judge_of_a_client_that_never_connects_fails(
    reference_server: addresses.Address, short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = f"unix:{short_dir / 'judge-none.sock'}"
    argv = ["conformance", "judge", "--listen", listen, "--upstream", str(reference_server)]
    assert main([*argv, "--", "true"]) == 1  # nothing judged is no pass
    assert f"the client made no connection to {listen}" in capsys.readouterr().err


def test_run_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["conformance", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Run the catalogue's server cases" in text
    for code in ("0 every case passed", "1 a case failed", "2 bad usage", "3 the target cannot"):
        assert code in text, code


def test_replay_command(
    reference_server: addresses.Address, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = [str(replay.traces_dir() / n) for n in ("v3-upload.jsonl", "unknown-program.jsonl")]
    assert main(["conformance", "replay", "--target", str(reference_server), *traces]) == 0
    assert "2 of 2 traces replayed identically" in capsys.readouterr().out


def test_serve_command_reports_client_results(
    short_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = short_dir / "serve-cli.sock"
    report = tmp_path / "serve.json"
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main([
        "conformance", "serve", "--listen", f"unix:{listen}", "--count", "1",
        "--json", str(report)])))  # fmt: skip
    thread.start()
    for _ in range(250):
        if listen.exists():
            break
        threading.Event().wait(0.02)
    with Client.connect(f"unix:{listen}", options=Options(chunk_size=16384)) as client:
        client.save(lambda chunk: None, 2, name="200000:7")
    thread.join(20)
    assert codes == [0]
    document = json.loads(report.read_text())
    assert document["passed_cases"] == ["7.3.2/1"] and document["failed_cases"] == []
    out = " ".join(capsys.readouterr().out.split())
    shown = re.search(r"\((\d+) of (\d+) traces playable for a client\)", out)
    assert shown is not None, out  # server-side traces are not counted as playable
    assert 1 <= int(shown[1]) < int(shown[2]) == len(replay.committed_traces("restore"))


def test_trace_show_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = replay.traces_dir() / "v2-upload-rejected.jsonl"
    assert main(["trace", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "XS_PROC_RESTORE_V2" in out and "──────▶" in out and "◀──────" in out
    assert '"code":9' in out  # the error body is decoded
    out_file = tmp_path / "t.pcapng"
    assert main(["trace", "export", "--pcapng", str(out_file), str(path)]) == 0
    assert out_file.read_bytes()[:4] == bytes.fromhex("0a0d0d0a")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"xdrstream_trace": 9}\n')
    assert main(["trace", "show", str(bad)]) == 1  # read, but not a trace (its content)
    assert "line 1" in capsys.readouterr().err
    assert main(["trace", "export", "--pcapng", str(out_file), str(bad)]) == 1
    assert "line 1" in capsys.readouterr().err


def test_run_over_mutual_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trustme = pytest.importorskip("trustme")
    from xdrstream.restore.server import RestoreServer, ServerThread
    from xdrstream.transport import tls

    ca = trustme.CA()
    pems = {
        "ca": ca.cert_pem,
        "server": ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem,
        "client": ca.issue_cert("client.example").private_key_and_cert_chain_pem,
    }
    for name, blob in pems.items():
        blob.write_to_path(str(tmp_path / f"{name}.pem"))
    context = tls.server_context(tmp_path / "server.pem", tmp_path / "server.pem",
                                 tmp_path / "ca.pem", require_client_cert=True)  # fmt: skip
    with ServerThread(RestoreServer("tcp:127.0.0.1:0", tls=context)) as server:
        target = f"tls:127.0.0.1:{server.address.port}"
        cases = ["--cases", "4.4.*", "--cases", "7.3.1/1", "--cases", "3.4/1", "--cases", "7.4.*"]
        client = ["--tls-ca", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "client.pem")]
        assert main(["conformance", "run", "--target", target, *client, *cases]) == 0
        out = capsys.readouterr().out
        assert "7.3.1/1" in out and "fail" not in out
        # without a client certificate the server refuses the handshake: unreachable
        assert main(["conformance", "run", "--target", target, "--tls-ca",
                     str(tmp_path / "ca.pem"), *cases]) == 3  # fmt: skip


def test_judge_of_sessions_that_never_come_is_exit_4(
    reference_server: addresses.Address, short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = f"unix:{short_dir / 'judge-wait.sock'}"
    argv = ["conformance", "judge", "--listen", listen, "--upstream", str(reference_server)]
    assert main([*argv, "--count", "1", "--timeout", "0.2"]) == 4  # stalled (cli.EXIT_STATUS)
    assert "fewer than 1 judged sessions ended in 0.2 s" in capsys.readouterr().err


def test_a_failed_tls_handshake_is_one_plain_line_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:  # plain TCP: closes each client
        target = f"tls:127.0.0.1:{server.getsockname()[1]}"

        def close_clients() -> None:
            with contextlib.suppress(OSError):
                while True:
                    server.accept()[0].close()

        thread = threading.Thread(target=close_clients, daemon=True)
        thread.start()
        for program in ("auto", "restore"):
            code = main(["conformance", "run", "--target", target, "--program", program,
                         "--timeout", "2"])  # fmt: skip
            assert code == 3
            err = capsys.readouterr().err
            assert "cannot connect: TLS handshake failed (" in err, err
            assert "_ssl.c" not in err and err.count(target) == 1, err
        server.shutdown(socket.SHUT_RDWR)
    thread.join(5)
