"""The HTML report (issue 16 part 7): structure parsed with html.parser, self-contained,
written by a judged session and by `conformance run --html`."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_real_clients import _call

from xdrstream.cli import main
from xdrstream.conformance import report
from xdrstream.conformance.judge import JudgingProxy, judge
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.transport import address as addresses


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cases: list[str] = []
        self.outcomes: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.hex_cells = 0
        self.tables = 0
        self._outcome = False
        self._hex = False
        self.hex_text = ""
        self.frames: dict[str, list[tuple[str, str]]] = {}  # case id -> (header, body)
        self._case = ""
        self._cell = ""
        self._row: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "div" and attr.get("class") == "case":
            self.cases.append(str(attr.get("id")))
            self._case = str(attr.get("id"))
        if tag == "tr" and attr.get("class") == "frame":
            self._row = {}
        if tag == "td" and attr.get("class") in ("header", "body"):
            self._cell = str(attr.get("class"))
            self._row[self._cell] = ""
        if tag == "span" and attr.get("class") == "o":
            self._outcome = True
        if tag == "td" and attr.get("class") == "hex":
            self.hex_cells += 1
            self._hex = True
        if tag == "table":
            self.tables += 1
        if tag == "a":
            self.links.append(str(attr.get("href")))
        if tag in ("link", "script", "img") or str(attr.get("src", "")).startswith("http"):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = ""
        if tag == "tr" and self._row:
            row = (self._row.get("header", ""), self._row.get("body", ""))
            self.frames.setdefault(self._case, []).append(row)
            self._row = {}

    def handle_data(self, data: str) -> None:
        if self._cell:
            self._row[self._cell] += data
        if self._outcome:
            self.outcomes.append(data)
            self._outcome = False
        if self._hex:
            self.hex_text += data
            self._hex = False


def test_html_of_a_judged_session(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with StorageServer(f"unix:{tmp_path / 'up.sock'}", tmp_path / "images"):
        listen = addresses.parse_address(f"unix:{tmp_path / 'j.sock'}")
        upstream = addresses.parse_address(f"unix:{tmp_path / 'up.sock'}")
        with JudgingProxy(listen, upstream) as proxy:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(tmp_path / "j.sock"))
                for proc, serial, body in ((66, 0, b""), (1, 3, bytes(8)), (2, 4, b"")):
                    sock.sendall(_call(proc, serial, body))
                    sock.recv(65536)
            [session] = proxy.wait(1, timeout=20)
    judged = judge(session)
    out = tmp_path / "r.html"
    report.write_html(
        out, [r for r, _ in judged], "broken client", frames=session.frames,
        evidence=[e for _, e in judged],
    )  # fmt: skip
    outline = _Outline()
    outline.feed(out.read_text(encoding="utf-8"))
    assert outline.cases == [r.case.id for r, _ in judged]
    assert outline.outcomes == [r.outcome for r, _ in judged]
    assert "fail" in outline.outcomes  # serial 3 after 0, the PING unanswered
    assert "spec.md#5-keepalive" in outline.links
    assert "spec.md#43-serials" in outline.links  # §4.3.1 is a paragraph of §4.3
    assert outline.hex_cells > 0 and "200080860000000100000042" in outline.hex_text
    assert outline.external == []


def test_run_writes_html(reference_server: addresses.Address, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    code = main(["conformance", "run", "--target", str(reference_server), "--cases", "4.4.1/1",
                 "--html", str(out)])  # fmt: skip
    assert code == 0
    outline = _Outline()
    outline.feed(out.read_text(encoding="utf-8"))
    assert outline.cases == ["4.4.1/1"] and outline.outcomes == ["pass"]
    assert "spec.md#44-calls-and-replies" in outline.links
    # the frames the case exchanged, header and body decoded (PING: void; ECHO: its value)
    frames = outline.frames["4.4.1/1"]
    headers = [h for h, _ in frames]
    assert any(h.startswith("CALL/OK") and "PING)" in h for h in headers), headers
    assert any(h.startswith("REPLY/OK") and "ECHO)" in h for h in headers), headers
    assert "void" in [b for h, b in frames if "PING)" in h]
    echo = [b for h, b in frames if "ECHO)" in h]
    assert echo and all(b and b != "void" for b in echo), echo


def test_html_counts_the_frames_it_does_not_show(
    reference_server: addresses.Address, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case's recording keeps at most RECORD_FRAMES frames; the report says how many more
    the case exchanged."""
    from xdrstream.conformance import peer

    def run(name: str) -> tuple[int, str]:
        out = tmp_path / name
        assert main(["conformance", "run", "--target", str(reference_server), "--cases",
                     "4.4.1/1", "--html", str(out)]) == 0  # fmt: skip
        text = out.read_text(encoding="utf-8")
        outline = _Outline()
        outline.feed(text)
        return len(outline.frames["4.4.1/1"]), text

    total, whole = run("whole.html")
    assert total > 3 and 'class="dropped"' not in whole
    monkeypatch.setattr(peer, "RECORD_FRAMES", 3)
    shown, cut = run("cut.html")
    assert shown == 3
    assert re.search(
        rf'<p class="dropped">{total - 3} more frames? exchanged, not shown \(a case', cut
    ), cut


def test_run_writes_html_of_libvirt_cases(tmp_path: Path) -> None:
    """`conformance run --html` against our storage server (libvirt's program): the error
    reply of an unknown procedure shows its decoded error fields."""
    (tmp_path / "images").mkdir()
    sock = tmp_path / "lv.sock"
    out = tmp_path / "lv.html"
    with StorageServer(f"unix:{sock}", tmp_path / "images"):
        code = main(["conformance", "run", "--target", f"unix:{sock}", "--program", "libvirt",
                     "--cases", "4.5/1", "--cases", "4.4.2/*", "--allow-deviation", "4.4.2/*",
                     "--html", str(out)])  # fmt: skip
    outline = _Outline()
    outline.feed(out.read_text(encoding="utf-8"))
    assert code == 0 and "4.5/1" in outline.cases
    frames = [f for case in outline.cases for f in outline.frames.get(case, [])]
    assert any("AUTH_LIST" in h for h, _ in frames)
    errors = [b for h, b in frames if h.startswith("REPLY/ERROR")]
    assert errors and all("code=" in b and "message=" in b for b in errors), errors


@pytest.mark.real_peers
@pytest.mark.timeout(120)
def test_report_renders_in_a_headless_browser(
    reference_server: addresses.Address, tmp_path: Path
) -> None:
    """Debian's chromium loads the report of a real run: its DOM has every case and frame
    row of the file, and it paints a page (a screenshot)."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (Debian package chromium)")
    out = tmp_path / "run.html"
    main(["conformance", "run", "--target", str(reference_server), "--cases", "4.4.*",
          "--html", str(out)])  # fmt: skip
    written = _Outline()
    written.feed(out.read_text(encoding="utf-8"))
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu",
              f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*common, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = _Outline()
    rendered.feed(dom.stdout)
    assert rendered.cases == written.cases and len(rendered.cases) >= 3
    assert rendered.outcomes == written.outcomes
    assert rendered.frames == written.frames and sum(map(len, rendered.frames.values())) > 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri()],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


_CLIENT = """
import socket, sys
from xdrstream.protocol.framing import Header, MessageType, pack_frame
with socket.socket(socket.AF_UNIX) as sock:
    sock.settimeout(5)
    sock.connect(sys.argv[1])
    for proc, serial, body in ((66, 0, b""), (1, 3, bytes(8)), (2, 4, b"")):
        sock.sendall(pack_frame(Header(0x20008086, 1, proc, MessageType.CALL, serial, 0), body))
        sock.recv(65536)
"""


@pytest.mark.timeout(60)
def test_judge_command_runs_a_client_and_writes_html(tmp_path: Path) -> None:
    """`conformance judge -- CLIENT`: the client's session judged, exit 1 (it breaks
    serials), the HTML report has the client cases and their frames."""
    import sys

    (tmp_path / "images").mkdir()
    listen, out = tmp_path / "j.sock", tmp_path / "judged.html"
    with StorageServer(f"unix:{tmp_path / 'up.sock'}", tmp_path / "images"):
        code = main(["conformance", "judge", "--listen", f"unix:{listen}", "--upstream",
                     f"unix:{tmp_path / 'up.sock'}", "--html", str(out), "--timeout", "20",
                     "--", sys.executable, "-c", _CLIENT, str(listen)])  # fmt: skip
    assert code == 1
    outline = _Outline()
    outline.feed(out.read_text(encoding="utf-8"))
    assert outline.cases and all(c.startswith("C") for c in outline.cases)
    assert "fail" in outline.outcomes
    assert any("AUTH_LIST" in h for rows in outline.frames.values() for h, _ in rows)
