"""Reading the trail for people: filters shared by ``audit log`` and ``audit export``, plain
sentences for each event, and the CSV and JSON exports (the HTML report is ``audit.html``).

Everything in an entry may come from a stranger's e-mail (subjects, addresses, file
names), so exports neutralise it for the tool that opens them: every CSV field is quoted
and no piece of one that a spreadsheet could take for a cell starts a formula (``csv_safe``),
JSON carries control characters as escapes (``gateway.display.json_text``), HTML is
escaped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.clock import iso
from gateway.display import json_text
from gateway.records.chain import AuditEntry
from gateway.records.store import AuditReader, EntryFilter
from gateway.routing.casenames import InvalidCaseReference, case_folder_name


# -- filters ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditQuery:
    """The filters of ``audit log`` and ``audit export``; all given ones must hold.

    ``case`` and ``correspondent`` select whole items: every entry of a message that was
    ever assigned to that case (or came from that correspondent), so that its ``fetched``
    and ``moved`` entries, which carry no case, are part of the story.
    """

    case: str | None = None
    message: str | None = None
    document: str | None = None
    correspondent: str | None = None
    since: str | None = None  # normalised UTC timestamp, inclusive
    until: str | None = None  # normalised UTC timestamp, exclusive
    events: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, ())}

    def to_filter(self) -> EntryFilter:
        """The store's filter: a case is looked for by the reference as given and by its folder name."""
        return EntryFilter(
            case_names=tuple(_case_names(self.case)) if self.case is not None else (),
            message=self.message,
            document=self.document,
            correspondent=self.correspondent,
            since=self.since,
            until=self.until,
            events=self.events,
        )


def parse_time(value: str, *, end: bool = False) -> str:
    """A date or date-time (UTC unless an offset is given) in the trail's timestamp format.

    A bare date as ``until`` means the whole day: the bound becomes the next midnight.
    """
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            if end:
                dt += timedelta(microseconds=1)
    except ValueError:
        raise ValueError(f"not a date or date-time: {value!r} (use e.g. 2026-11-25 or 2026-11-25T14:30)") from None
    return iso(dt)


def _case_names(case: str) -> list[str]:
    """The reference as given and its folder name (twice the same when it is not valid)."""
    folder = case
    with contextlib.suppress(InvalidCaseReference):
        folder = case_folder_name(case)
    return [case, folder]


def select_entries(audit: AuditReader, q: AuditQuery) -> Iterator[AuditEntry]:
    """The entries matching ``q``, in chain order."""
    return audit.select(q.to_filter())


# -- plain sentences --------------------------------------------------------------------------------
REASONS = {
    "no-signature": "not signed",
    "malformed-mime": "the message structure could not be read",
    "no-rule-matched": "no case reference recognised",
    "untrusted-signer": "the signer's certificate is not trusted",
    "from-mismatch": "the signer is not the sender",
    "decryption-failed-no-key": "could not be decrypted: no matching key",
    "decryption-failed-corrupt": "could not be decrypted: the encrypted content is damaged",
}
VERDICTS = {
    "verified": "verified: signed by the sender, signature valid",
    "unverified": "not verified",
    "quarantined": "could not be read safely",
}


#: The verdict's warnings (docs/verdict.md) in words: a verified letter the reviewer should look at twice.
WARNINGS = {
    "sender-not-signer": "sent on behalf of the signer by another address (Sender)",
    "reply-to-not-signer": "replies would go to an address other than the signer's (Reply-To)",
}


def warnings_text(warnings: Any) -> list[str]:
    if not isinstance(warnings, list):
        return []
    return [WARNINGS.get(str(w), str(w)) for w in warnings]


def reasons_text(reasons: Any) -> str:
    if not isinstance(reasons, list) or not reasons:
        return ""
    return "; ".join(REASONS.get(str(r), str(r)) for r in reasons)


def actor_text(actor: str) -> str:
    """``daemon`` -> ``gateway``; ``cli:alice`` -> ``alice (command line)``."""
    if actor == "daemon":
        return "gateway"
    if actor.startswith("cli:"):
        return f"{actor[4:]} (command line)"
    return actor


def _d(e: AuditEntry, key: str, default: str = "?") -> str:
    value = e.details.get(key)
    return default if value is None else str(value)


def _with_reasons(text: str, reasons: Any) -> str:
    words = reasons_text(reasons)
    return f"{text} ({words})" if words else text


def _verdict(e: AuditEntry) -> str:
    name = _d(e, "verdict")
    sig = e.details.get("signature") or {}
    text = f"Checked: {VERDICTS.get(name, name)}"
    if isinstance(sig, dict) and sig.get("signer"):
        text += f", signer {sig['signer']}"
    text = _with_reasons(text, e.details.get("reasons"))
    warnings = warnings_text(e.details.get("warnings"))
    return text + "".join(f"; warning: {w}" for w in warnings)


def _routed(e: AuditEntry) -> str:
    if e.details.get("case_reference"):
        return f"Assigned to case {_d(e, 'case_reference')} by rule “{_d(e, 'rule')}”"
    return _with_reasons(f"Not assigned to a case; filed under {_d(e, 'case_folder')}", e.details.get("reasons"))


def _released(e: AuditEntry) -> str:
    text = f"Released from quarantine by {actor_text(e.actor)} into {_d(e, 'path')}"
    note = e.details.get("note")
    return f"{text}; note: {note}" if note else text


def _moved(e: AuditEntry) -> str:
    if e.details.get("reconciled"):
        return "Confirmed moved on the mail server (after a restart)"
    return f"Moved on the mail server to {_d(e, 'to')}"


DESCRIBE: dict[str, Callable[[AuditEntry], str]] = {
    "config-loaded": lambda e: f"Gateway started with configuration {_d(e, 'path')} (sha256 {_d(e, 'sha256')[:16]}…)",
    "fetched": lambda e: (
        f"Received in mailbox {_d(e, 'mailbox')}/{_d(e, 'folder')} (UID {_d(e, 'uid')}, {_d(e, 'size')} bytes)"
    ),
    "duplicate": lambda e: f"Same message as {_d(e, 'duplicate_of')} arrived again; not filed twice",
    "decrypted": lambda e: f"Decrypted ({_d(e, 'scheme')})",
    "decryption-failed": lambda e: f"Could not be decrypted ({_d(e, 'scheme')}): {reasons_text([_d(e, 'reason')])}",
    "key-used": lambda e: f"Used our {_d(e, 'scheme')} key to {_d(e, 'purpose')}",
    "verified": lambda e: f"Signature checked ({_d(e, 'scheme')}): {_d(e, 'status')}, signer {_d(e, 'signer')}",
    "verdict": _verdict,
    "routed": _routed,
    "stored": lambda e: (
        f"Filed in case folder {_d(e, 'path')}" + (" (completed after a restart)" if e.details.get("recovered") else "")
    ),
    "quarantined": lambda e: _with_reasons("Held in quarantine", e.details.get("reasons")),
    "released": _released,
    "refiled": lambda e: f"Moved by {actor_text(e.actor)} from {_d(e, 'from')} to {_d(e, 'path')}: {_d(e, 'note')}",
    "moved": _moved,
    "processing-abandoned": lambda e: "Processing was interrupted; the message is fetched again",
    "mailbox-error": lambda e: (
        f"Reading mailbox {_d(e, 'mailbox')} failed unexpectedly ({_d(e, 'error')})"
    ),
}


def describe(e: AuditEntry) -> str:
    """One sentence a non-technical reviewer understands; unknown events list their details."""
    fn = DESCRIBE.get(e.event)
    if fn is not None:
        return fn(e)
    label = e.event.replace("-", " ").capitalize()
    parts = [f"{k}: {_short(v)}" for k, v in sorted(e.details.items()) if v not in (None, "", [], {})]
    return f"{label} ({', '.join(parts)})" if parts else label


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


# -- CSV and JSON -----------------------------------------------------------------------------------
CSV_COLUMNS = ("seq", "at", "event", "actor", "message", "case", "document", "correspondent", "summary", "details")


def row_of(e: AuditEntry) -> dict[str, Any]:
    """The flat form used by ``audit log`` and the CSV export."""
    return {
        "seq": e.seq,
        "at": e.at,
        "event": e.event,
        "actor": e.actor,
        "message": e.message,
        "case": e.case,
        "document": e.document,
        "correspondent": e.correspondent,
        "summary": describe(e),
        "details": json.dumps(e.details, ensure_ascii=False, sort_keys=True),
        "hash": e.hash,
    }


FORMULA_STARTS = "=+-@"
#: Where a spreadsheet may start a new cell inside what was written as one field: at the
#: separators it splits on (``;`` is Excel's on German systems, ``,``, TAB) and at line
#: breaks, when it ignores the quotes (a paste, a "text to columns", a naive import).
CELL_BREAKS = ";,\t\r\n"
# Blanks and quotes may stand between a break and the formula: a spreadsheet drops the
# blanks, and a reader whose idea of quoting is out of step takes a quote for syntax.
_FORMULA_PIECE = re.compile(f"(^|[{re.escape(CELL_BREAKS)}])(?=[ \t\r\n\"]*[{re.escape(FORMULA_STARTS)}])")


def csv_safe(value: Any) -> str:
    """Defuse spreadsheet formulas: every piece a spreadsheet could take for a cell starts with text.

    A field, and whatever follows a separator or line break inside it, gets an apostrophe
    in front when (after blanks and quotes) it would start with ``= + - @``; a field
    starting with TAB or CR gets one too, as some programs drop those and read on. The apostrophe is what
    spreadsheets themselves use for "this is text", so a reader still sees the value.
    """
    text = "" if value is None else str(value)
    text = _FORMULA_PIECE.sub(lambda m: m.group(1) + "'", text)
    return "'" + text if text[:1] in ("\t", "\r") else text


def export_csv(entries: Iterator[AuditEntry]) -> str:
    """Every field quoted, so a separator or line break inside one never splits it."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    w.writerow([*CSV_COLUMNS, "hash"])
    for e in entries:
        row = row_of(e)
        w.writerow([csv_safe(row[c]) for c in (*CSV_COLUMNS, "hash")])
    return buf.getvalue()


def export_json(entries: Iterator[AuditEntry], q: AuditQuery, *, generated_at: str) -> str:
    """The entries exactly as chained (each can be re-hashed), with the filters that chose them."""
    doc = {"generated_at": generated_at, "filters": q.describe(), "entries": [e.to_json() for e in entries]}
    return json_text(doc, indent=1, sort_keys=True) + "\n"
