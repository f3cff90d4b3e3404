"""`audit export`: the HTML report renders in a real browser and tells each case's story;
CSV and JSON carry the same entries, defused for the tools that open them."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Env
from support.audit import correspondence, entries, file_correspondence, records

from gateway.audit.report import actor_text
from gateway.demo.samples import letter
from gateway.records.actors import cli_actor
from gateway.records.chain import entry_hash

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = 'Az. 63-BV-2026-0147 <img src=x onerror=alert(1)><script>document.title="pwned"</script>'


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="pst-chromium-")
    try:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(dom: str) -> tuple[str, list[str]]:
    p = _Text()
    p.feed(dom)
    return " ".join(" ".join(p.parts).split()), p.tags


@pytest.fixture
def released(env: Env) -> Env:
    """Filed correspondence, a hostile subject, and the quarantined message released by a person."""
    file_correspondence(env, [*correspondence(), letter(subject=HOSTILE)])
    q = next(r for r in records(env) if r.state == "quarantined")
    env.cli("quarantine", "release", q.id, "--case", "63-BV-2026-0147", "--note", "Absender bestätigt", check=True)
    return env


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium (Debian package) is not installed")
def test_html_report_renders_in_chromium_with_each_cases_events(released: Env, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    released.cli("audit", "export", "--format", "html", "-o", str(report), check=True)
    html = report.read_text()
    assert "<script" not in html.replace("&lt;script", "") and "src=" not in html.replace("src=x", "")
    assert "<link" not in html and "http://" not in html and "https://" not in html

    shot = tmp_path / "report.png"
    proc = chromium(f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    print(f"screenshot: {shot}")
    dom = chromium("--dump-dom", report.as_uri()).stdout
    text, tags = page_text(dom)

    assert "img" not in tags and "script" not in tags, "the hostile subject stayed text"
    assert HOSTILE in text
    assert "Integrity check passed" in text
    case_part = text.split("Case 63-BV-2026-0147 ", 2)[2].split("Case VG 1 K 1234/25")[0]
    for sentence in (
        "Received in mailbox rathaus/INBOX (UID 1",
        "Checked: not verified (not signed)",
        "Assigned to case 63-BV-2026-0147 by rule “building permits”",
        "Assigned to case 63-BV-2026-0147 by rule “reply with our reference”",
        "Filed in case folder 63-BV-2026-0147/",
        "Moved on the mail server to Poststelle/Processed",
        "Held in quarantine (the message structure could not be read)",
        "Moved on the mail server to Poststelle/Quarantine",
        f"Released from quarantine by {actor_text(cli_actor().name)} into 63-BV-2026-0147/",
        "note: Absender bestätigt",
        "Released from quarantine and filed",
    ):
        assert sentence in case_part, sentence
    assert "Ladung Az. 1 K 1234/25" in text.split("Case VG 1 K 1234/25", 2)[2]
    assert "Gateway started with configuration" in text


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium (Debian package) is not installed")
def test_html_report_of_a_tampered_record_says_so(released: Env, tmp_path: Path) -> None:
    entry = released.entries()[0]
    (entry / "original.eml").write_bytes(b"forged")
    report = tmp_path / "report.html"
    released.cli("audit", "export", "--format", "html", "--case", "63-BV-2026-0147", "-o", str(report), check=True)
    text, _ = page_text(chromium("--dump-dom", report.as_uri()).stdout)
    assert "Integrity check FAILED: 1 problem found" in text
    assert f"file-altered: altered (entry {entry.parent.name}/{entry.name})" in text
    assert "Case VG 1 K 1234/25" not in text, "the case filter applies"


def test_csv_export_defuses_spreadsheet_formulas(env: Env, tmp_path: Path) -> None:
    file_correspondence(env, [letter(subject="Az. =1+2", sender="attacker@example.org")])
    out = tmp_path / "log.csv"
    env.cli("audit", "export", "--format", "csv", "-o", str(out), check=True)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["seq"] for r in rows] == [str(e.seq) for e in entries(env)]
    routed = next(r for r in rows if r["event"] == "routed")
    assert routed["case"] == "'=1+2"
    assert all(not v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())
    assert oct(out.stat().st_mode & 0o777) == "0o640"


def test_json_export_holds_rehashable_entries_and_its_filters(env: Env, tmp_path: Path) -> None:
    file_correspondence(env)
    out = tmp_path / "log.json"
    env.cli("audit", "export", "-f", "json", "--event", "stored", "-o", str(out), check=True)
    doc = json.loads(out.read_text())
    assert doc["filters"] == {"events": ["stored"]}
    assert [e["event"] for e in doc["entries"]] == ["stored"] * 3
    for e in doc["entries"]:
        assert entry_hash({k: v for k, v in e.items() if k != "hash"}) == e["hash"]
