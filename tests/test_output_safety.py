"""What the CLI prints is no way into the clerk's terminal or spreadsheet.

Subjects and addresses are a stranger's text: the human-readable views show every
control and format character as a visible escape, JSON carries them escaped, and the CSV
export quotes every field and never lets a piece of one start a formula.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import unicodedata
from pathlib import Path

import pytest
from conftest import Env
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.common import print_json, print_table
from gateway.audit.report import CSV_COLUMNS, csv_safe, export_csv
from gateway.display import json_text, safe_text
from gateway.records.chain import AuditEntry

UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# ESC-started CSI and OSC (a window title, a link), BEL, backspaces, the C1 CSI, a bidi
# override that turns "exe.pdf" around, a zero-width space and a tag character.
HOSTILE = "\x1b]0;pwned\x07 \x1b[2J\x08\x08 \x9b31m \u202efdp.exe \u200b\U000e0041 \x7f"
WITNESSES = ("\x1b", "\x07", "\x08", "\x9b", "\u202e", "\u200b", "\U000e0041", "\x7f")


def unsafe_chars(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in UNSAFE]


def shown(text: str) -> list[str]:
    """The unsafe characters in printed output, ignoring the line breaks that end lines."""
    return [ch for ch in unsafe_chars(text) if ch != "\n"]


def encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


# A quoted local part may hold them raw.
HOSTILE_ADDRESS = '"amt\x1b[8m\x07\x08"@nachbarstadt.example'


def hostile_letter(subject: str, *, malformed: bool = False) -> bytes:
    head = (
        f"From: {encoded_word('Amt ' + HOSTILE)} <{HOSTILE_ADDRESS}>\r\n"
        "To: rathaus@stadt.example\r\n"
        f"Subject: {encoded_word(subject)}\r\n"
        "Message-ID: <hostile@output.test>\r\nMIME-Version: 1.0\r\n"
    )
    if malformed:
        return (head + "Content-Type: multipart/mixed\r\n\r\n--oops\r\nbroken\r\n").encode("utf-8")
    return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo.\r\n").encode("utf-8")


# -- the one function ---------------------------------------------------------------------------
@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.characters(exclude_categories=())))
def test_safe_text_never_contains_a_control_or_format_character(text: str) -> None:
    """Whatever a sender wrote, safe_text's output has no Cc, Cf, Cs, Zl or Zp character."""
    out = safe_text(text)
    assert unsafe_chars(out) == []
    if not unsafe_chars(text):
        assert out == text, "text without such characters is shown unchanged"


def test_safe_text_shows_each_control_as_a_visible_escape() -> None:
    """ESC, BEL, BS, C1 CSI, bidi, zero-width and tag characters become readable escapes; umlauts stay."""
    assert safe_text("Grüße\x1b[31m\x07\x08\x9b\u202e\u200b\U000e0041") == (
        "Grüße\\x1b[31m\\x07\\x08\\x9b\\u202e\\u200b\\U000e0041"
    )


@settings(deadline=None, max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(exclude_categories=())),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(alphabet=st.characters(exclude_categories=()), max_size=5), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_json_output_never_contains_a_raw_control_and_reads_back_unchanged(value: object) -> None:
    """JSON for people holds no raw C0, C1, DEL or format character, and parses back to the same value."""
    text = json_text(value, indent=2)
    assert [ch for ch in unsafe_chars(text) if ch != "\n"] == []
    assert json.loads(text) == value


def test_json_keeps_umlauts_readable() -> None:
    """Only unsafe characters are escaped: a German subject stays legible in --json output."""
    assert json_text({"s": "Prüfbescheid \x9b"}) == '{"s": "Prüfbescheid \\u009b"}'


def test_table_and_json_printers_escape_hostile_cells(capsys: pytest.CaptureFixture[str]) -> None:
    """Every table cell and every JSON string the CLI prints is escaped, whatever the command."""
    print_table([{"subject": HOSTILE, "from": "a\x9bb@example.org"}], ["subject", "from"])
    print_json({"subject": HOSTILE})
    out = capsys.readouterr().out
    assert shown(out) == []
    assert "\\x1b]0;pwned\\x07" in out and "\\u202efdp.exe" in out


# -- the views, after a real run ----------------------------------------------------------------
def test_case_and_quarantine_views_show_sender_controls_as_escapes(env: Env) -> None:
    """cases list/show, quarantine list/show, audit log: no control character reaches the terminal."""
    env.append(
        hostile_letter(f"Az. 63-BV-2026-0300 {HOSTILE}"),
        hostile_letter(f"Az. 63-BV-2026-0301 {HOSTILE} kaputt", malformed=True),
    )
    env.cli("run", "--once", check=True)
    (quarantined,) = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    # The one header decoder already replaced the controls in what was recorded (the original
    # bytes are kept in the entry); invisible format characters remain for the views to escape.
    recorded = quarantined["subject"] + quarantined["from"]
    assert not any(unicodedata.category(ch) == "Cc" for ch in recorded), "no control character is recorded"
    assert "\u200b" in quarantined["subject"] and "pwned" in quarantined["subject"], "the rest is kept as sent"
    shows_sender_text = {
        ("cases", "list"): False,  # case references and counts only
        ("cases", "show", "63-BV-2026-0300"): True,
        ("quarantine", "list"): True,
        ("quarantine", "show", quarantined["id"]): True,
        ("audit", "log"): False,  # sentences about events; must be clean all the same
    }
    for args, sender_text in shows_sender_text.items():
        out = env.cli(*args, check=True).stdout
        assert shown(out) == [], f"{' '.join(args)} printed {shown(out)!r}"
        if sender_text:
            assert "\\u200b" in out and "pwned" in out, f"{' '.join(args)} shows escapes"
    for args, sender_text in shows_sender_text.items():
        if sender_text:
            out = env.cli(*args, "--json", check=True).stdout
            assert shown(out) == [], f"{' '.join(args)} --json printed {shown(out)!r}"
            assert "\\u200b" in out and "pwned" in out


# -- CSV --------------------------------------------------------------------------------------------
FORMULA = ("=", "+", "-", "@")


def entry(**details: object) -> AuditEntry:
    return AuditEntry(
        seq=1,
        at="2026-11-25T10:00:00.000000Z",
        event="routed",
        actor="daemon",
        message="m1",
        case=str(details.pop("case", "")),
        document=None,
        correspondent=str(details.pop("correspondent", "")),
        details=details,
        prev_hash="0" * 64,
        hash="1" * 64,
    )


def cells_as_split_by(text: str, delimiter: str, *, honour_quotes: bool) -> list[str]:
    quoting = csv.QUOTE_MINIMAL if honour_quotes else csv.QUOTE_NONE
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    return [c for row in rows for c in row]


def formula_cells(text: str) -> list[str]:
    """Cells that start a formula when a spreadsheet splits the file on ``,``, ``;`` or TAB.

    Also without honouring quotes, as a paste or a naive import does. Blanks and quote
    characters in front of a cell count for nothing: a spreadsheet drops the blanks, and
    one whose quoting is out of step with the file's takes a quote for syntax.
    """
    found = []
    for delimiter in (",", ";", "\t"):
        for honour in (True, False):
            for c in cells_as_split_by(text, delimiter, honour_quotes=honour):
                if c.lstrip(' \t\r\n"').startswith(FORMULA):
                    found.append(c)
    return found


def test_csv_field_with_semicolon_then_formula_cannot_become_a_formula_cell() -> None:
    """With ';' as separator (Excel on German systems) 'x;=HYPERLINK(...)' stays one text cell."""
    text = export_csv(iter([entry(case='Az. 1;=HYPERLINK("http://evil")', correspondent="a;+1@x;-2;@SUM(1)")]))
    assert formula_cells(text) == []
    (header, row) = list(csv.reader(io.StringIO(text, newline="")))
    assert header == [*CSV_COLUMNS, "hash"]
    assert row[CSV_COLUMNS.index("case")] == 'Az. 1;\'=HYPERLINK("http://evil")'


def test_csv_quotes_every_field() -> None:
    """Every field is quoted, so no separator inside one splits it in a reader that honours quotes."""
    text = export_csv(iter([entry(case="plain")]))
    for line in text.splitlines():
        fields = line.split('","')
        assert line.startswith('"') and line.endswith('"') and len(fields) == len(CSV_COLUMNS) + 1


@settings(deadline=None, max_examples=400)
@given(st.text(alphabet=st.sampled_from(list("=+-@;,\t\r\n \"'aZ1ä\x1b")), max_size=30))
def test_csv_export_of_any_text_has_no_cell_starting_a_formula(value: str) -> None:
    """However a spreadsheet splits the file no cell starts a formula; the field reads back as written, defused."""
    text = export_csv(iter([entry(case=value, correspondent=value, note=value)]))
    assert formula_cells(text) == []
    (_, row) = list(csv.reader(io.StringIO(text, newline="")))
    assert row[CSV_COLUMNS.index("case")] == csv_safe(value)
    assert csv_safe(value).replace("'", "") == value.replace("'", ""), "only apostrophes are added"


def test_csv_export_from_the_cli_defuses_a_semicolon_formula(env: Env, tmp_path: Path) -> None:
    """A subject with ';=' filed by a real run is exported without a formula cell for ';'-splitting spreadsheets."""
    env.append(hostile_letter("Az. x;=cmd|' /C calc'!A0"))
    env.cli("run", "--once", check=True)
    out = tmp_path / "log.csv"
    env.cli("audit", "export", "--format", "csv", "-o", str(out), check=True)
    text = out.read_text(encoding="utf-8")
    assert ";=cmd" not in text and ";'=cmd" in text
    assert formula_cells(text) == []
