"""``[ui]``: reports and tables in English or German, times in the configured zone, the record in UTC."""

from __future__ import annotations

import ast
import json
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

import gateway.records.sqlite.writes as writes
from cli.common import use_locale
from cli.main import app
from gateway.audit import html as html_report
from gateway.audit import report
from gateway.audit.findings import VerifyReport
from gateway.audit.html import render_html
from gateway.audit.report import AuditQuery, describe
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.records.chain import AuditEntry, AuditEvent
from gateway.records.open import open_store
from gateway.statedir import init_storage
from gateway.ui import DEFAULT, Locale
from gateway.ui.german import GERMAN

REPO = Path(__file__).resolve().parent.parent
WINTER = "2026-01-15T12:00:00.000000Z"
SUMMER = "2026-07-15T12:00:00.000000Z"
CASE = "63-BV-2026-0147"


@pytest.fixture(autouse=True)
def _default_locale() -> Iterator[None]:
    """A CLI run sets the process's output locale from its config; later tests start from the default."""
    yield
    use_locale(DEFAULT)


def entry(
    seq: int,
    at: str,
    event: str,
    details: dict[str, object],
    *,
    case: str | None = CASE,
    message: str | None = "msg-1",
    actor: str = "daemon",
) -> AuditEntry:
    return AuditEntry(seq, at, event, actor, message, case, None, "buerger@example.org", details, "0" * 64, "f" * 64)


def story() -> list[AuditEntry]:
    """A letter received in winter, checked, filed in summer; quarantined and released; a gateway start."""
    return [
        entry(1, WINTER, "fetched", {"mailbox": "rathaus", "folder": "INBOX", "uid": 7, "size": 2048}, case=None),
        entry(
            2,
            SUMMER,
            "verdict",
            {"verdict": "unverified", "reasons": ["no-signature"], "warnings": ["sender-not-signer"]},
        ),
        entry(3, SUMMER, "routed", {"case_reference": CASE, "rule": "Bauanträge", "subject": "Bauantrag"}),
        entry(4, SUMMER, "quarantined", {"reasons": ["malformed-mime"]}),
        entry(5, SUMMER, "released", {"path": f"{CASE}/x", "note": "Absender bestätigt"}, actor="cli:alice"),
        entry(6, SUMMER, "stored", {"path": f"{CASE}/x"}),
        entry(7, SUMMER, "moved", {"to": "Poststelle/Processed"}),
        entry(
            8, SUMMER, "config-loaded", {"path": "/etc/poststelle.toml", "sha256": "ab" * 32}, case=None, message=None
        ),
    ]


def render(language: str) -> str:
    verification = VerifyReport(entries=8, checkpoints=1, sealed_up_to=6, case_entries=1, head_hash="f" * 64)
    return render_html(
        story(),
        records={},
        query=AuditQuery(case=CASE),
        generated_at=SUMMER,
        verification=verification,
        locale=Locale(language=language),
    )


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S).split())


ENGLISH_LABELS = [
    "Poststelle audit report",
    "Contents",
    "Case ",
    "Gateway events",
    "Integrity check passed",
    "Letter received",
    "Subject:",
    "Warning:",
    "signature check:",
    "Received in mailbox",
    "Checked: not verified",
    "not signed",
    "Assigned to case",
    "Held in quarantine",
    "Released from quarantine by",
    "(command line)",
    "Filed in case folder",
    "Moved on the mail server",
    "Gateway started with configuration",
    "Times in",
    "All times are UTC",
    "entry 1",
    "in order of arrival",
    "Last entry checksum",
]


def test_html_report_in_german_has_german_labels_and_no_english_ones() -> None:
    de = text_of(render("de"))
    for german in (
        "Poststelle – Prüfbericht",
        "Inhalt",
        f"Aktenzeichen {CASE}",
        "Ereignisse des Gateways",
        "Prüfung der Unversehrtheit bestanden",
        "Betreff:",
        "Warnung:",
        "Signaturprüfung: nicht verifiziert",
        "Eingegangen im Postfach rathaus/INBOX (UID 7, 2048 Bytes)",
        "Geprüft: nicht verifiziert (nicht signiert)",
        f"Dem Aktenzeichen {CASE} zugeordnet nach Regel „Bauanträge“",
        "In Quarantäne genommen (der Aufbau",
        f"Aus der Quarantäne freigegeben von alice (Kommandozeile) nach {CASE}/x; Vermerk: Absender bestätigt",
        f"In der Akte abgelegt: {CASE}/x",
        "Auf dem Mailserver verschoben nach Poststelle/Processed",
        "Zeiten in Europe/Berlin (MEZ/MESZ)",
        "Eintrag 1",
    ):
        assert german in de, german
    for english in ENGLISH_LABELS:
        assert english not in de, english
    assert '<html lang="de">' in render("de")


def test_html_report_in_english_keeps_the_english_labels() -> None:
    en = text_of(render("en"))
    for english in ENGLISH_LABELS:
        if english != "All times are UTC":
            assert english in en, english
    assert "Times in Europe/Berlin (CET/CEST)" in en
    assert "Aktenzeichen" not in en and "Eingang" not in en


def test_report_shows_berlin_time_in_winter_and_summer_and_keeps_the_utc_instant() -> None:
    de, en = render("de"), render("en")
    assert "15.01.2026 13:00:00 MEZ" in de and "15.07.2026 14:00:00 MESZ" in de
    assert "2026-01-15 13:00:00 CET" in en and "2026-07-15 14:00:00 CEST" in en
    assert "12:00:00 UTC" not in de + en
    assert f'<time datetime="{WINTER}">' in de and f'<time datetime="{SUMMER}">' in en


def test_report_in_another_zone_names_that_zone() -> None:
    page = render_html(
        story(),
        records={},
        query=AuditQuery(),
        generated_at=WINTER,
        verification=None,
        locale=Locale(language="en", timezone="America/New_York"),
    )
    assert "Times in America/New_York (EST/EDT)" in page
    assert "2026-01-15 07:00:00 EST" in page and "2026-07-15 08:00:00 EDT" in page


def test_every_german_template_keeps_the_english_fields() -> None:
    fields = string.Formatter()
    for english, german in GERMAN.items():
        names = sorted(f for _, f, _, _ in fields.parse(english) if f)
        assert sorted(f for _, f, _, _ in fields.parse(german) if f) == names, english


def _literals(module: object, calls: tuple[str, ...]) -> set[str]:
    """English texts passed to ``t``/``_count`` (and the tables of words) in a module's source."""
    tree = ast.parse(Path(str(getattr(module, "__file__", ""))).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in calls:
                found.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return found


def test_every_english_text_in_use_has_a_german_entry() -> None:
    texts = _literals(report, ("t",)) | _literals(html_report, ("t", "_count"))
    texts |= set(report.REASONS.values()) | set(report.VERDICTS.values()) | set(report.WARNINGS.values())
    texts |= {label for label, _ in html_report.STATUS.values()}
    for path in sorted((REPO / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print_table":
                columns = node.args[1]
                assert isinstance(columns, ast.List), f"{path.name}: print_table columns as a list literal"
                texts |= {c.value.upper() for c in columns.elts if isinstance(c, ast.Constant)}
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "t":
                texts |= {
                    c.value
                    for a in node.args
                    for c in ast.walk(a)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
    texts |= set(_literals(__import__("cli.common").common, ("t",)))
    missing = sorted(t for t in texts if t not in GERMAN)
    assert not missing, missing
    assert "Received in mailbox {mailbox}/{folder} (UID {uid}, {size} bytes)" in texts, "the scan sees the sentences"
    assert "CASE_REF" in texts, "the scan sees the table headers"


def test_sentences_fill_strangers_text_without_reading_it_as_a_template() -> None:
    e = entry(1, WINTER, "routed", {"case_reference": "{0} {rule}", "rule": "{__class__}"})
    assert describe(e, Locale(language="de")) == "Dem Aktenzeichen {0} {rule} zugeordnet nach Regel „{__class__}“"


# -- configuration ----------------------------------------------------------------------------------
def write_config(tmp_path: Path, ui: str = "") -> Path:
    path = tmp_path / "poststelle.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path}/state"\n{ui}', encoding="utf-8")
    return path


def test_ui_defaults_to_english_and_europe_berlin(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    assert (cfg.ui.language, cfg.ui.timezone) == ("en", "Europe/Berlin")


def test_ui_settings_are_read(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, '[ui]\nlanguage = "de"\ntimezone = "UTC"\n'))
    assert (cfg.ui.language, cfg.ui.timezone) == ("de", "UTC")


@pytest.mark.parametrize(
    ("ui", "key", "problem"),
    [
        ('timezone = "Europe/Bonn"', "ui.timezone", "unknown time zone 'Europe/Bonn'"),
        ('timezone = "../../etc/passwd"', "ui.timezone", "unknown time zone"),
        ('timezone = "Europe"', "ui.timezone", "unknown time zone"),
        ("timezone = 1", "ui.timezone", "expected a string"),
        ('language = "fr"', "ui.language", "must be one of en, de"),
        ('locale = "de"', "ui.locale", "unknown key"),
    ],
)
def test_bad_ui_settings_are_named(tmp_path: Path, ui: str, key: str, problem: str) -> None:
    path = write_config(tmp_path, f"[ui]\n{ui}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and problem in str(info.value) and str(path) in str(info.value)


# -- the CLI --------------------------------------------------------------------------------------
@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real state directory whose trail has one entry written in winter and one in summer."""
    config = write_config(tmp_path)
    times = iter([WINTER, SUMMER])
    monkeypatch.setattr(writes, "now_iso", lambda: next(times))
    init_storage(load_config(config))  # as `poststelle init` does
    store = open_store(load_config(config))
    store.record_events(
        [
            AuditEvent(
                "fetched", message="msg-1", details={"mailbox": "rathaus", "folder": "INBOX", "uid": 7, "size": 2048}
            )
        ]
    )
    store.record_events([AuditEvent("quarantined", message="msg-1", details={"reasons": ["no-signature"]})])
    store.close()
    return config


def audit_log(config: Path, ui: str, *args: str) -> str:
    text = config.read_text(encoding="utf-8").split("[ui]")[0]
    config.write_text(text + ui, encoding="utf-8")
    result = CliRunner().invoke(app, ["audit", "log", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_audit_log_in_german_shows_berlin_times_german_headers_and_sentences(trail: Path) -> None:
    out = audit_log(trail, '[ui]\nlanguage = "de"\n')
    head = out.splitlines()[0].split()
    assert head == ["NR", "ZEIT", "EREIGNIS", "DURCH", "NACHRICHT", "AKTENZEICHEN", "BESCHREIBUNG"]
    assert "15.01.2026 13:00:00 MEZ" in out and "15.07.2026 14:00:00 MESZ" in out
    assert "Eingegangen im Postfach rathaus/INBOX (UID 7, 2048 Bytes)" in out
    assert "In Quarantäne genommen (nicht signiert)" in out
    for english in ("SEQ", "SUMMARY", "Received in mailbox", "Held in quarantine", "T12:00"):
        assert english not in out, english


def test_audit_log_in_english_shows_berlin_times_with_their_zone(trail: Path) -> None:
    out = audit_log(trail, "")
    assert out.splitlines()[0].split()[:3] == ["SEQ", "AT", "EVENT"]
    assert "2026-01-15 13:00:00 CET" in out and "2026-07-15 14:00:00 CEST" in out
    assert "Received in mailbox rathaus/INBOX (UID 7, 2048 bytes)" in out


def test_audit_log_json_and_exports_keep_the_recorded_utc_instants(trail: Path, tmp_path: Path) -> None:
    out = audit_log(trail, '[ui]\nlanguage = "de"\n', "--json")
    assert [e["at"] for e in json.loads(out)] == [WINTER, SUMMER]
    csv_file = tmp_path / "export.csv"
    result = CliRunner().invoke(app, ["audit", "export", "-f", "csv", "-o", str(csv_file), "--config", str(trail)])
    assert result.exit_code == 0, result.output
    csv_text = csv_file.read_text(encoding="utf-8")
    assert WINTER in csv_text and SUMMER in csv_text and "MEZ" not in csv_text
    assert "Received in mailbox" in csv_text, "the export's summary is the record's language"


def test_empty_table_and_errors_speak_the_configured_language(trail: Path) -> None:
    out = audit_log(trail, '[ui]\nlanguage = "de"\n', "--event", "released")
    assert out.strip() == "(keine)"
    result = CliRunner().invoke(app, ["audit", "log", "--since", "gestern", "--config", str(trail)])
    assert result.exit_code == 1 and result.stderr.startswith("Fehler: not a date or date-time")


def test_audit_verify_speaks_german(trail: Path) -> None:
    """Labels and sentences in German; break kinds and details stay as recorded."""
    config = trail
    config.write_text(config.read_text(encoding="utf-8") + '[ui]\nlanguage = "de"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 1, "the trail names a message the ledger does not know"
    for german in (
        "audit verify: FEHLGESCHLAGEN: 1 Unstimmigkeit",
        "Unstimmigkeiten:",
        "Eintrag 2",
        "Einträge",
        "Prüfpunkte",
        "Aktenordner",
        "Quarantäne",
        "Eingangsbuch",
        "mit ihren Manifesten verglichen",
    ):
        assert german in result.stdout, german
    labels = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.strip()}
    assert not labels & {"entries", "checkpoints", "case", "quarantine", "ledger", "json-lines", "entry"}, labels


def test_report_shows_time_filters_in_the_configured_zone() -> None:
    query = AuditQuery(since="2026-01-14T23:00:00.000000Z", events=("stored", "moved"))
    page = render_html(
        story(), records={}, query=query, generated_at=SUMMER, verification=None, locale=Locale(language="de")
    )
    assert "since = 15.01.2026 00:00:00 MEZ, events = stored / moved" in text_of(page)


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """inspect points structlog at the runner's captured stderr; later tests must not log into it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("_restore_logging")
def test_inspect_table_and_messages_in_german(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[ui]\nlanguage = "de"\n')
    mail = tmp_path / "brief.eml"
    mail.write_bytes(b"From: a@example.org\r\nSubject: Hallo\r\nContent-Type: text/plain\r\n\r\nHallo\r\n")
    result = CliRunner().invoke(app, ["inspect", "--config", str(config), str(mail), str(tmp_path / "fehlt.eml")])
    assert result.exit_code == 2
    assert result.stdout.split()[:3] == ["DATEI", "ERGEBNIS", "SIGNATUR"]
    assert f"Fehler: {tmp_path / 'fehlt.eml'} nicht lesbar: Datei nicht gefunden" in result.stderr


def test_since_and_until_are_calendar_days_in_the_ui_time_zone() -> None:
    from gateway.audit.report import parse_time

    berlin = "Europe/Berlin"
    assert parse_time("2026-01-15", zone=berlin) == "2026-01-14T23:00:00.000000Z"
    assert parse_time("2026-07-15", end=True, zone=berlin) == "2026-07-15T22:00:00.000000Z"
    assert parse_time("2026-07-15T09:30", zone=berlin) == "2026-07-15T07:30:00.000000Z"
    assert parse_time("2026-07-15T09:30+00:00", zone=berlin) == "2026-07-15T09:30:00.000000Z"
    assert parse_time("2026-07-15") == "2026-07-15T00:00:00.000000Z"
