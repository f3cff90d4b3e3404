"""Reading the trail for people: filters shared by ``audit log`` and ``audit export``, plain
sentences for each event, and the CSV and JSON exports (the HTML report is ``audit.html``).

Everything in an entry may come from a stranger's e-mail (subjects, addresses, file
names), so exports neutralise it for the tool that opens them: every CSV field is quoted
and no piece of one that a spreadsheet could take for a cell starts a formula (``csv_safe``),
JSON carries control characters as escapes (``gateway.display.json_text``), HTML is
escaped.

The sentences are written for people, so they come in the reader's language
(``gateway.ui.Locale``, from ``[ui]``); the exports are the record's own form and keep
English and UTC, whatever the configuration says.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.audit.outbound_text import describe_outbound
from gateway.clock import iso
from gateway.display import json_text
from gateway.records.actors import parse_cli_actor
from gateway.records.chain import AuditEntry
from gateway.records.store import AuditReader, EntryFilter
from gateway.routing.casenames import InvalidCaseReference, case_folder_name
from gateway.ui import DEFAULT, Locale
from gateway.ui.reasons import REASONS as CLERK_REASONS
from gateway.ui.reasons import reasons_words, signature_state


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
            events=tuple(dict.fromkeys(n for e in self.events for n in (e, *EVENT_ALIASES.get(e, ())))),
        )


#: Events that older trails name differently: asking for one finds both (old entries are never rewritten).
EVENT_ALIASES = {"signature-checked": ("verified",), "verified": ("signature-checked",)}


def parse_time(value: str, *, end: bool = False, zone: str = "UTC") -> str:
    """A date or date-time in the trail's timestamp format (UTC).

    A date or a date-time without an offset is read in ``zone`` (the ``[ui]`` time zone: a
    records office asks for "the 25th" in its own calendar day, which starts at 23:00 or
    22:00 UTC in Germany). A bare date as ``until`` means the whole day: the bound becomes
    the next local midnight.
    """
    text = value.strip()
    tz = ZoneInfo(zone)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
            dt = datetime(d.year, d.month, d.day, tzinfo=tz)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=tz)
            if end:
                dt += timedelta(microseconds=1)
    except ValueError:
        raise ValueError(f"not a date or date-time: {value!r} (use e.g. 2026-11-25 or 2026-11-25T14:30)") from None
    return iso(dt.astimezone(UTC))


def _case_names(case: str) -> list[str]:
    """The reference as given and its folder name (twice the same when it is not valid)."""
    folder = case
    with contextlib.suppress(InvalidCaseReference):
        folder = case_folder_name(case)
    return [case, folder]


def entry_cases(entries: Iterable[AuditEntry]) -> list[str]:
    """The case references the entries name, in order of first appearance."""
    return list(dict.fromkeys(e.case for e in entries if e.case))


def select_entries(audit: AuditReader, q: AuditQuery) -> Iterator[AuditEntry]:
    """The entries matching ``q``, in chain order."""
    return audit.select(q.to_filter())


# -- plain sentences --------------------------------------------------------------------------------
# Every text below is English and the key of its German translation (gateway.ui.german);
# a sentence is a template whose {fields} are filled after translation, so that a
# stranger's subject or file name is never read as part of a template.
#: Reason codes in words: one table for the whole gateway (gateway.ui.reasons).
REASONS = CLERK_REASONS
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


def warnings_text(warnings: Any, locale: Locale = DEFAULT) -> list[str]:
    if not isinstance(warnings, list):
        return []
    return [locale.t(WARNINGS.get(str(w), str(w))) for w in warnings]


def reasons_text(reasons: Any, locale: Locale = DEFAULT) -> str:
    if not isinstance(reasons, list) or not reasons:
        return ""
    return reasons_words(reasons, locale)


def verdict_text(name: str, locale: Locale = DEFAULT) -> str:
    return locale.t(VERDICTS.get(name, name))


def actor_text(actor: str, locale: Locale = DEFAULT) -> str:
    """``daemon`` -> ``gateway``; ``cli:alice`` -> ``alice (command line)``; sudo's caller is named too."""
    if actor == "daemon":
        return locale.t("gateway")
    person = parse_cli_actor(actor)
    if person is None:
        return actor
    name, sudo_user = person
    if sudo_user is not None:
        return locale.t("{name} (command line, sudo by {sudo_user})", name=name, sudo_user=sudo_user)
    return locale.t("{name} (command line)", name=name)


def _d(e: AuditEntry, key: str, default: str = "?") -> str:
    value = e.details.get(key)
    return default if value is None else str(value)


def _with_reasons(text: str, reasons: Any, locale: Locale) -> str:
    words = reasons_text(reasons, locale)
    return f"{text} ({words})" if words else text


def verdict_summary(details: dict[str, Any], lc: Locale = DEFAULT, *, signer: bool = False) -> str:
    """``not verified; signature invalid: <why> (<other reasons>)``: unsigned and badly signed differ."""
    text = verdict_text(str(details.get("verdict")), lc)
    reasons = details.get("reasons")
    state = signature_state(details)
    if state is not None and state.state == "invalid":
        text += "; " + state.text(lc)
        reasons = [r for r in reasons or [] if r not in state.reasons]
    sig = details.get("signature") or {}
    if signer and isinstance(sig, dict) and sig.get("signer"):
        text += lc.t(", signer {signer}", signer=sig["signer"])
    return _with_reasons(text, reasons, lc)


def _verdict(e: AuditEntry, lc: Locale) -> str:
    text = lc.t("Checked: {verdict}", verdict=verdict_summary(e.details, lc, signer=True))
    warnings = warnings_text(e.details.get("warnings"), lc)
    return text + "".join(lc.t("; warning: {warning}", warning=w) for w in warnings)


def _signature_checked(e: AuditEntry, lc: Locale) -> str:
    """The unwrap's ``signature-checked`` event (``verified`` in older trails): what the signature is."""
    state = signature_state({"signature": {"status": _d(e, "status", "none")}, "reasons": e.details.get("reasons")})
    return lc.t(
        "Signature checked ({scheme}): {state}, signer {signer}",
        scheme=_d(e, "scheme"),
        state=state.text(lc) if state else "?",
        signer=_d(e, "signer"),
    )


def _demail_checked(e: AuditEntry, lc: Locale) -> str:
    """The De-Mail check: the provider's integrity value, absenderbestätigt and persönlich (docs/demail.md)."""
    meta = e.details.get("meta") if isinstance(e.details.get("meta"), dict) else {}
    yes_no = {True: lc.t("yes"), False: lc.t("no"), None: "-"}
    if e.details.get("authoritative") is True:
        authoritative = lc.t("proven") if e.details.get("authoritative_proven") else lc.t("claimed, not proven")
    else:
        authoritative = yes_no[None if e.details.get("authoritative") is None else False]
    text = lc.t(
        "De-Mail checked: provider signature {integrity}; absenderbestätigt: {authoritative}; persönlich: {private}",
        integrity=lc.t(_d(e, "integrity")),
        authoritative=authoritative,
        private=yes_no.get(meta.get("private") if meta else None, "-"),
    )
    return _with_reasons(text, e.details.get("reasons"), lc)


def _routed(e: AuditEntry, lc: Locale) -> str:
    rule = _d(e, "rule")
    if e.details.get("case_reference") and rule.startswith("receipt:"):
        return lc.t("Assigned to case {case}, the case of the sent document it is about", case=_d(e, "case_reference"))
    if e.details.get("case_reference"):
        return lc.t("Assigned to case {case} by rule “{rule}”", case=_d(e, "case_reference"), rule=_d(e, "rule"))
    return _with_reasons(
        lc.t("Not assigned to a case; filed under {folder}", folder=_d(e, "case_folder")), e.details.get("reasons"), lc
    )


#: A receipt's kind as the subject of a sentence (``receipts.model.ReceiptKind``).
RECEIPT_KINDS = {
    "dsn": "Delivery status notification",
    "mdn": "Return receipt",
    "demail": "De-Mail confirmation",
}
#: How a receipt was matched to its sent document (``receipts.match``).
MATCHED_BY = {
    "envid": "its envelope id (ENVID)",
    "message-id": "the document's Message-ID",
    "private-id": "its De-Mail private id",
}


def _receipt_kind(e: AuditEntry, lc: Locale) -> str:
    kind = _d(e, "kind")
    return lc.t(RECEIPT_KINDS.get(kind, kind))


def _receipt_matched(e: AuditEntry, lc: Locale) -> str:
    """A receipt matched: which sent document, how, and per recipient the state it names."""
    from gateway.audit.outbound_text import state_words

    found: Any = e.details.get("steps")
    steps = [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []
    named = "; ".join(f"{s.get('recipient', '?')}: {state_words(str(s.get('state', '?')), lc)}" for s in steps)
    how = _d(e, "matched_by")
    text = lc.t(
        "{kind} for the sent document {document}, matched by {how}: {steps}",
        kind=_receipt_kind(e, lc),
        document=_d(e, "document"),
        how=lc.t(MATCHED_BY.get(how, how)),
        steps=named or "-",
    )
    ignored: Any = e.details.get("ignored")
    if isinstance(ignored, list) and ignored:
        text += lc.t("; left out: {ignored}", ignored="; ".join(str(i) for i in ignored))
    return text


def _receipt_unmatched(e: AuditEntry, lc: Locale) -> str:
    """A receipt that moves no record: why, in a clerk's words (it is kept in quarantine)."""
    return lc.t(
        "{kind} that changes no delivery record: {reason}",
        kind=_receipt_kind(e, lc),
        reason=reasons_text([_d(e, "problem")], lc),
    )


def _released(e: AuditEntry, lc: Locale) -> str:
    text = lc.t("Released from quarantine by {actor} into {path}", actor=actor_text(e.actor, lc), path=_d(e, "path"))
    note = e.details.get("note")
    return text + lc.t("; note: {note}", note=note) if note else text


def _moved(e: AuditEntry, lc: Locale) -> str:
    if e.details.get("reconciled"):
        return lc.t("Confirmed moved on the mail server (after a restart)")
    return lc.t("Moved on the mail server to {folder}", folder=_d(e, "to"))


def _stored(e: AuditEntry, lc: Locale) -> str:
    text = lc.t("Filed in case folder {path}", path=_d(e, "path"))
    return text + lc.t(" (completed after a restart)") if e.details.get("recovered") else text


def _failing(e: AuditEntry, lc: Locale) -> str:
    if e.details.get("state") == "auth-failed":
        return lc.t(
            "Mailbox {mailbox}: the server rejected the login; not tried again until a restart or "
            "auth_retry_interval ({error})",
            mailbox=_d(e, "mailbox"),
            error=_d(e, "error"),
        )
    return lc.t("Mailbox {mailbox} cannot be read; retrying ({error})", mailbox=_d(e, "mailbox"), error=_d(e, "error"))


def _stopped(e: AuditEntry, lc: Locale) -> str:
    reason = e.details.get("reason")
    if reason == "signal":
        return lc.t("Daemon stopped by {signal}", signal=_d(e, "signal"))
    if reason == "once-done":
        return lc.t("Daemon stopped: the single run (--once) is done")
    return lc.t("Daemon stopped by an error: {error}", error=_d(e, "error"))


def _fetched(e: AuditEntry, lc: Locale) -> str:
    """The fetch, and when the message had arrived in the mailbox (the entry's own time is the fetch)."""
    text = lc.t(
        "Received in mailbox {mailbox}/{folder} (UID {uid}, {size} bytes)",
        mailbox=_d(e, "mailbox"),
        folder=_d(e, "folder"),
        uid=_d(e, "uid"),
        size=_d(e, "size"),
    )
    if "received" not in e.details:  # recorded before arrival and fetch were told apart
        return text
    received = e.details.get("received")
    if received:
        return text + lc.t("; delivered to the mailbox {received}", received=lc.time(str(received)))
    return text + lc.t("; the server gave no arrival time, the fetch time stands for it")


DESCRIBE: dict[str, Callable[[AuditEntry, Locale], str]] = {
    "config-loaded": lambda e, lc: lc.t(
        "Gateway started with configuration {path} (sha256 {sha256}…)", path=_d(e, "path"), sha256=_d(e, "sha256")[:16]
    ),
    "daemon-started": lambda e, lc: lc.t(
        "Daemon started (pid {pid}, version {version})", pid=_d(e, "pid"), version=_d(e, "version")
    ),
    "daemon-stopped": lambda e, lc: _stopped(e, lc),
    "audit-key-rotated": lambda e, lc: lc.t(
        "Audit signing key rotated: {old} hands over to {new}", old=_d(e, "old_key_id"), new=_d(e, "new_key_id")
    ),
    "config-reloaded": lambda e, lc: lc.t(
        "Configuration {path} reloaded (sha256 {sha256}…)", path=_d(e, "path"), sha256=_d(e, "sha256")[:16]
    ),
    "store-migrated": lambda e, lc: lc.t(
        "Records moved from {source} to {target}; the trail continues after entry {seq}",
        source=_d(e, "source"),
        target=_d(e, "target"),
        seq=_d(e, "source_head_seq"),
    ),
    "config-reload-rejected": lambda e, lc: lc.t(
        "New configuration rejected, the one in force kept: {key}: {problem}",
        key=_d(e, "key"),
        problem=_d(e, "problem"),
    ),
    "fetched": lambda e, lc: _fetched(e, lc),
    "duplicate": lambda e, lc: lc.t(
        "Same message as {original} arrived again; not filed twice", original=_d(e, "duplicate_of")
    ),
    "decrypted": lambda e, lc: lc.t("Decrypted ({scheme})", scheme=_d(e, "scheme")),
    "decryption-failed": lambda e, lc: lc.t(
        "Could not be decrypted ({scheme}): {reason}",
        scheme=_d(e, "scheme"),
        reason=reasons_text([_d(e, "reason")], lc),
    ),
    "key-used": lambda e, lc: lc.t(
        "Used our {scheme} key to {purpose}", scheme=_d(e, "scheme"), purpose=lc.t(_d(e, "purpose"))
    ),
    "signature-checked": _signature_checked,
    "verified": _signature_checked,  # the same event, as older trails name it
    "verdict": _verdict,
    "routed": _routed,
    "demail-checked": _demail_checked,
    "stored": _stored,
    "quarantined": lambda e, lc: _with_reasons(lc.t("Held in quarantine"), e.details.get("reasons"), lc),
    "released": _released,
    "refiled": lambda e, lc: lc.t(
        "Moved by {actor} from {old} to {path}: {note}",
        actor=actor_text(e.actor, lc),
        old=_d(e, "from"),
        path=_d(e, "path"),
        note=_d(e, "note"),
    ),
    "moved": _moved,
    "receipt-matched": _receipt_matched,
    "receipt-unmatched": _receipt_unmatched,
    "processing-abandoned": lambda e, lc: lc.t("Processing was interrupted; the message is fetched again"),
    "mailbox-error": lambda e, lc: lc.t(
        "Reading mailbox {mailbox} failed unexpectedly ({error})", mailbox=_d(e, "mailbox"), error=_d(e, "error")
    ),
    "mailbox-failing": _failing,
    "disk-full": lambda e, lc: lc.t(
        "Mailbox {mailbox}: the disk is full at {path}; nothing was acknowledged, retrying ({error})",
        mailbox=_d(e, "mailbox"),
        path=_d(e, "path"),
        error=_d(e, "error"),
    ),
    "clock-went-back": lambda e, lc: lc.t(
        "The system clock went back {seconds} s (last entry at {last}); entries are ordered by number",
        seconds=_d(e, "seconds_back"),
        last=_d(e, "last_entry_at"),
    ),
    "outbox-recovered": lambda e, lc: lc.t("The outbox works again (last error: {error})", error=_d(e, "last_error")),
    "mailbox-recovered": lambda e, lc: lc.t(
        "Mailbox {mailbox} works again (failing since {since}; last error: {error})",
        mailbox=_d(e, "mailbox"),
        since=lc.time(_d(e, "since")) if _d(e, "since") else "?",
        error=_d(e, "last_error"),
    ),
}


def describe(e: AuditEntry, locale: Locale = DEFAULT) -> str:
    """One sentence a non-technical reviewer understands; unknown events list their details."""
    outbound = describe_outbound(e, locale)
    if outbound is not None:
        return outbound
    fn = DESCRIBE.get(e.event)
    if fn is not None:
        return fn(e, locale)
    label = e.event.replace("-", " ").capitalize()
    parts = [f"{k}: {_short(v)}" for k, v in sorted(e.details.items()) if v not in (None, "", [], {})]
    return f"{label} ({', '.join(parts)})" if parts else label


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


# -- CSV and JSON -----------------------------------------------------------------------------------
CSV_COLUMNS = ("seq", "at", "event", "actor", "message", "case", "document", "correspondent", "summary", "details")


def row_of(e: AuditEntry, locale: Locale = DEFAULT) -> dict[str, Any]:
    """The flat form used by ``audit log`` and the CSV export (``at`` stays the recorded UTC instant)."""
    return {
        "seq": e.seq,
        "at": e.at,
        "event": e.event,
        "actor": e.actor,
        "message": e.message,
        "case": e.case,
        "document": e.document,
        "correspondent": e.correspondent,
        "summary": describe(e, locale),
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
_FORMULA_PIECE = re.compile(f'(^|[{re.escape(CELL_BREAKS)}])(?=[ \t\r\n"]*[{re.escape(FORMULA_STARTS)}])')


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


def export_json(
    entries: Iterator[AuditEntry],
    q: AuditQuery,
    *,
    generated_at: str,
    outbox: Callable[[list[str]], list[dict[str, Any]]] | None = None,
) -> str:
    """The entries exactly as chained (each can be re-hashed), with the filters that chose them.

    ``outbox``, given the cases of the entries, returns their outgoing documents as they
    stand now (``audit.outbound_view``); they go under ``outbox``, beside the entries.
    """
    chosen = list(entries)
    doc: dict[str, Any] = {
        "generated_at": generated_at,
        "filters": q.describe(),
        "entries": [e.to_json() for e in chosen],
    }
    if outbox is not None:
        doc["outbox"] = outbox(entry_cases(chosen))
    return json_text(doc, indent=1, sort_keys=True) + "\n"
