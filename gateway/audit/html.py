"""The HTML audit report: one self-contained file a reviewer opens in any browser.

Per case, a timeline of the correspondence and what happened to each item, in plain
sentences (``audit.report.describe``), and the documents the authority sent in that case:
to whom, what the relay answered per recipient, and what the receipts say about their
delivery (``audit.outbound_view``). Receipts themselves appear on the timeline as items of
their own ("Receipt received"), and each delivery step on the document's item. No scripts, no external resources (a
Content-Security-Policy forbids loading any), inline CSS only, every value escaped:
subjects, addresses and file names come from strangers' e-mail.

Words and times follow ``[ui]`` (``gateway.ui.Locale``): English or German, times in the
configured zone with the zone named at the top and each time carrying its abbreviation.
The recorded UTC instants stay in the record and the exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from gateway.audit.findings import VerifyReport
from gateway.audit.outbound_view import (
    DELIVERY_STATES,
    DOCUMENT_STATES,
    RECIPIENT_STATES,
    DeliveryInfo,
    DocumentView,
    RecipientView,
    delivery_text,
)
from gateway.audit.report import AuditQuery, actor_text, describe, verdict_summary, warnings_text
from gateway.display import safe_text
from gateway.records.chain import AuditEntry
from gateway.records.messages import MessageRecord
from gateway.ui import DEFAULT, Locale, is_timestamp

STATUS = {  # the latest event that says where an item stands -> (label, colour class)
    "stored": ("Filed", "ok"),
    "released": ("Released from quarantine and filed", "ok"),
    "quarantined": ("In quarantine", "warn"),
    "duplicate": ("Duplicate (filed earlier)", "muted"),
    "processing-abandoned": ("Interrupted, fetched again", "muted"),
    "decryption-failed": ("Could not be decrypted", "warn"),
}
EMPHASIS = {"quarantined": "warn", "decryption-failed": "warn", "released": "ok", "stored": "ok"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d2733;background:#f4f6f8;
margin:0;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 6px;padding-top:8px;border-top:3px solid #2d5b88}
h3{font-size:16px;margin:0}
.sub{color:#5b6773;margin:0 0 14px}
.box{border-radius:8px;padding:12px 16px;margin:16px 0;border:1px solid}
.box.ok{background:#e8f5ec;border-color:#7cc295}.box.bad{background:#fdecec;border-color:#e08a8a}
.box.none{background:#eef1f4;border-color:#c2ccd6}
.box ul{margin:6px 0 0 18px;padding:0}
.toc{columns:2;margin:8px 0 0 18px;padding:0}
.item{background:#fff;border:1px solid #d5dde5;border-radius:8px;margin:14px 0;padding:12px 16px}
.meta{color:#5b6773;font-size:14px;margin:2px 0 8px}
.badge{display:inline-block;font-size:13px;font-weight:600;border-radius:10px;padding:1px 10px;margin-left:8px;
vertical-align:1px}
.badge.ok{background:#d6f0de;color:#1c6b35}.badge.warn{background:#fde2c8;color:#8a4300}
.badge.muted{background:#e5e9ed;color:#47525e}
table{border-collapse:collapse;width:100%;font-size:14px}
td{border-top:1px solid #e5eaef;padding:5px 8px;vertical-align:top}
td.when{white-space:nowrap;color:#47525e;width:170px}td.who{white-space:nowrap;color:#47525e;width:150px}
tr.warn td.what{color:#8a4300;font-weight:600}tr.ok td.what{color:#1c6b35}
.seq{color:#8a96a3;font-size:12px}
.warning{color:#8a4300;background:#fdf0e2;border-radius:4px;padding:3px 8px;margin:4px 0 8px;font-size:14px}
table.rcpt th{text-align:left;font-weight:600;color:#47525e;padding:5px 8px;border-top:1px solid #e5eaef}
table.rcpt{margin:4px 0 10px}td.reply{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
h3.part{margin:18px 0 4px;color:#2d5b88}
footer{color:#5b6773;font-size:13px;margin-top:40px;border-top:1px solid #d5dde5;padding-top:10px;
word-break:break-all}
@media print{body{background:#fff}.item{break-inside:avoid}}
"""


@dataclass
class Item:
    """One piece of correspondence (a message; later also an outgoing document) and its entries."""

    kind: str
    id: str
    entries: list[AuditEntry] = field(default_factory=list)
    record: MessageRecord | None = None

    @property
    def case(self) -> str | None:
        for e in reversed(self.entries):
            if e.case:
                return e.case
        return self.record.case_ref if self.record else None

    @property
    def subject(self) -> str | None:
        if self.record and self.record.subject:
            return self.record.subject
        for e in self.entries:
            if e.event == "routed" and e.details.get("subject"):
                return str(e.details["subject"])
        return None

    @property
    def sender(self) -> str | None:
        if self.record and self.record.from_addr:
            return self.record.from_addr
        return next((e.correspondent for e in self.entries if e.correspondent), None)

    @property
    def received(self) -> str:
        for e in self.entries:
            if e.event == "fetched":  # the arrival; trails before it was recorded so say "internaldate"
                arrival = e.details.get("received") or e.details.get("internaldate")
                if arrival:
                    return str(arrival)
        return self.entries[0].at

    @property
    def is_receipt(self) -> bool:
        """A DSN, MDN or De-Mail confirmation: evidence about a sent document, not a letter."""
        return any(e.event in ("receipt-matched", "receipt-unmatched") for e in self.entries)

    @property
    def status(self) -> tuple[str, str] | None:
        for e in reversed(self.entries):
            if e.event in STATUS:
                return STATUS[e.event]
        return None

    def verdict(self, locale: Locale = DEFAULT) -> str | None:
        for e in reversed(self.entries):
            if e.event == "verdict":
                return verdict_summary(e.details, locale)
        return None

    def warnings(self, locale: Locale = DEFAULT) -> list[str]:
        """The latest verdict's warnings, in words."""
        for e in reversed(self.entries):
            if e.event == "verdict":
                return warnings_text(e.details.get("warnings"), locale)
        return []


def group_items(
    entries: Iterable[AuditEntry], records: Mapping[str, MessageRecord]
) -> tuple[dict[str | None, list[Item]], list[AuditEntry]]:
    """Items by case (None: not assigned to a case), and the gateway's own entries."""
    items: dict[tuple[str, str], Item] = {}
    general: list[AuditEntry] = []
    for e in entries:
        if e.message is not None:
            key = ("message", e.message)
        elif e.document is not None:
            key = ("document", e.document)
        else:
            general.append(e)
            continue
        item = items.get(key)
        if item is None:
            item = items[key] = Item(key[0], key[1], record=records.get(key[1]) if key[0] == "message" else None)
        item.entries.append(e)
    by_case: dict[str | None, list[Item]] = {}
    for item in items.values():
        by_case.setdefault(item.case, []).append(item)
    return by_case, general


def _count(lc: Locale, n: int, one: str, many: str, **fields: object) -> str:
    """``1 item`` / ``3 items``: both forms are catalogue entries, filled with ``{n}`` and ``fields``."""
    return lc.t(one if n == 1 else many, n=n, **fields)


def render_html(
    entries: Iterable[AuditEntry],
    *,
    records: Mapping[str, MessageRecord],
    query: AuditQuery,
    generated_at: str,
    verification: VerifyReport | None,
    title: str | None = None,
    locale: Locale = DEFAULT,
    outbound: Mapping[str, Sequence[DocumentView]] | None = None,
) -> str:
    """The report; ``outbound`` holds each case's outgoing documents (``audit.outbound_view.case_documents``)."""
    lc = locale
    documents = outbound or {}
    heading = title if title is not None else lc.t("Poststelle audit report")
    entry_list = list(entries)
    by_case, general = group_items(entry_list, records)
    cases = sorted((c for c in by_case if c is not None), key=str.casefold)
    out: list[str] = [
        "<!DOCTYPE html>",
        f'<html lang="{escape(lc.language)}"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(heading)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(heading)}</h1>",
        f'<p class="sub">{_scope(entry_list, query, generated_at, lc)}</p>',
        _integrity(verification, lc),
    ]
    if cases or None in by_case:
        out.append(f'<p><b>{escape(lc.t("Contents"))}</b></p><ul class="toc">')
        for i, case in enumerate(cases, start=1):
            n = len(by_case[case])
            out.append(
                f'<li><a href="#case-{i}">{escape(lc.t("Case {case}", case=case))}</a> '
                f"({escape(_count(lc, n, '{n} item', '{n} items'))})</li>"
            )
        if None in by_case:
            out.append(
                f'<li><a href="#unassigned">{escape(lc.t("Not assigned to a case"))}</a> ({len(by_case[None])})</li>'
            )
        if general:
            out.append(f'<li><a href="#gateway">{escape(lc.t("Gateway events"))}</a></li>')
        out.append("</ul>")
    if not entry_list:
        out.append(f'<div class="box none">{escape(lc.t("No entries match the filters."))}</div>')
    for i, case in enumerate(cases, start=1):
        items = by_case[case]
        out.append(f'<section id="case-{i}"><h2>{escape(lc.t("Case {case}", case=case))}</h2>')
        order = _count(lc, len(items), "{n} item, in order of arrival.", "{n} items, in order of arrival.")
        out.append(f'<p class="sub">{escape(order)}</p>')
        views = {d.id: d for d in documents.get(case, ())}
        out.append(_documents_overview(list(views.values()), {i.id for i in items if i.kind == "document"}, lc))
        out.extend(_item(item, lc, views.get(item.id) if item.kind == "document" else None) for item in items)
        out.append("</section>")
    if None in by_case:
        out.append(f'<section id="unassigned"><h2>{escape(lc.t("Not assigned to a case"))}</h2>')
        note = lc.t("Items without a recognised case reference, and items held in quarantine.")
        out.append(f'<p class="sub">{escape(note)}</p>')
        out.extend(_item(item, lc) for item in by_case[None])
        out.append("</section>")
    if general:
        out.append(f'<section id="gateway"><h2>{escape(lc.t("Gateway events"))}</h2><div class="item"><table>')
        out.extend(_row(e, lc) for e in general)
        out.append("</table></div></section>")
    out.append(_footer(verification, lc))
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _scope(entries: list[AuditEntry], query: AuditQuery, generated_at: str, lc: Locale) -> str:
    text = lc.t("Generated {time}.", time=lc.time(generated_at)) + " "
    text += _count(lc, len(entries), "{n} recorded event", "{n} recorded events")
    if entries:
        text += lc.t(" from {first} to {last}", first=lc.time(entries[0].at), last=lc.time(entries[-1].at))
    filters = query.describe()
    if filters:
        shown = ", ".join(f"{k} = {_filter_value(v, lc)}" for k, v in filters.items())
        text += lc.t(". Selected by: {filters}", filters=shown)
    return escape(text + ". " + lc.zone_note() + ".")


def _filter_value(value: object, lc: Locale) -> str:
    """A filter as the reader gave it: event lists joined, ``since``/``until`` in the configured zone."""
    if isinstance(value, tuple):
        return " / ".join(str(v) for v in value)
    return lc.time(str(value)) if is_timestamp(value) else str(value)


def _integrity(v: VerifyReport | None, lc: Locale) -> str:
    if v is None:
        unchecked = lc.t("The integrity of the record was not checked for this report.")
        return f'<div class="box none">{escape(unchecked)}</div>'
    facts = (
        lc.t("{n} entries in the record", n=v.entries)
        + ", "
        + _count(lc, v.checkpoints, "{n} signed checkpoint", "{n} signed checkpoints")
        + ", "
        + lc.t("sealed up to entry {seq}", seq=v.sealed_up_to)
        + "; "
        + _count(
            lc,
            v.case_entries,
            "{n} filed item and {q} in quarantine compared with their checksums.",
            "{n} filed items and {q} in quarantine compared with their checksums.",
            q=v.quarantine_entries,
        )
    )
    if v.unsealed:
        facts += " " + _count(
            lc,
            v.unsealed,
            "The newest {n} entry is not yet covered by a signed checkpoint "
            "(normal until the gateway's next run ends).",
            "The newest {n} entries are not yet covered by a signed checkpoint "
            "(normal until the gateway's next run ends).",
        )
    if v.ok:
        passed = lc.t("Integrity check passed.")
        complete = lc.t("The record is complete and unaltered as far as it can be checked:")
        return f'<div class="box ok"><b>{escape(passed)}</b> {escape(complete)} {escape(facts)}</div>'
    shown = v.breaks[:50]
    lines = "".join(f"<li>{escape(_break_text(b.to_json(), lc))}</li>" for b in shown)
    more = (
        f"<li>{escape(lc.t('… and {n} more', n=len(v.breaks) - len(shown)))}</li>" if len(v.breaks) > len(shown) else ""
    )
    failed = _count(
        lc, len(v.breaks), "Integrity check FAILED: {n} problem found.", "Integrity check FAILED: {n} problems found."
    )
    altered = lc.t("The record below may have been altered.")
    return f'<div class="box bad"><b>{escape(failed)}</b> {escape(altered)} {escape(facts)}<ul>{lines}{more}</ul></div>'


def _break_text(b: dict[str, object], lc: Locale) -> str:
    text = f"{b['kind']}: {b['detail']}"
    if b.get("seq") is not None:
        text = lc.t("entry {seq}", seq=b["seq"]) + ": " + text
    if b.get("file"):
        text += f" [{b['file']}]"
    return text


def _item(item: Item, lc: Locale, document: DocumentView | None = None) -> str:
    if document is not None:
        return _document_item(item, document, lc)
    status = item.status
    badge = f'<span class="badge {status[1]}">{escape(lc.t(status[0]))}</span>' if status else ""
    if item.kind != "message":
        label = lc.t(item.kind.capitalize())
    else:
        label = lc.t("Receipt received") if item.is_receipt else lc.t("Letter received")
    meta = [f"{escape(lc.t(item.kind))} {escape(item.id)}"]
    if item.sender:
        meta.append(_e(lc.t("from {sender}", sender=item.sender)))
    verdict = item.verdict(lc)
    if verdict:
        meta.append(escape(lc.t("signature check: {verdict}", verdict=verdict)))
    subject = _e(item.subject) if item.subject else f"<i>{escape(lc.t('(unknown)'))}</i>"
    warning = escape(lc.t("Warning:"))
    parts = [
        '<div class="item">',
        f"<h3>{escape(label)} {escape(lc.time(item.received))}{badge}</h3>",
        f"<div><b>{escape(lc.t('Subject:'))}</b> {subject}</div>",
        f'<div class="meta">{" · ".join(meta)}</div>',
        *(f'<div class="warning"><b>{warning}</b> {escape(w)}</div>' for w in item.warnings(lc)),
        "<table>",
        *(_row(e, lc) for e in item.entries),
        "</table></div>",
    ]
    return "\n".join(parts)


def _e(text: str) -> str:
    """A stranger's text (subject, address, relay reply) for HTML: controls visible, markup escaped."""
    return escape(safe_text(text))


#: The outbox's state -> colour class of its badge.
DOCUMENT_EMPHASIS = {"sent": "ok", "bounced": "warn", "hold": "warn", "deferred": "warn"}


def _documents_overview(views: list[DocumentView], on_timeline: set[str], lc: Locale) -> str:
    """The case's sent documents at a glance; each links to its place on the timeline when it is there."""
    if not views:
        return ""
    rows = []
    for d in views:
        title = _e(d.title)
        if d.id in on_timeline:
            title = f'<a href="#document-{escape(d.id)}">{title}</a>'
        to = ", ".join(
            f"{_e(r.address)}{_bcc_mark(d, r.address, lc)} ({escape(_recipient_state(r, lc))})" for r in d.recipients
        )
        rows.append(
            f'<tr><td class="when">{escape(lc.time(d.queued_at))}</td><td>{title}<br>'
            f'<span class="seq">{escape(lc.t("outbox id {id}", id=d.id))}</span></td>'
            f"<td>{escape(lc.t(DOCUMENT_STATES.get(d.state, d.state)))}</td><td>{to}</td></tr>"
        )
    head = "".join(f"<th>{escape(lc.t(h))}</th>" for h in ("Queued", "Document", "State", "Recipients"))
    return (
        f'<h3 class="part">{escape(lc.t("Sent documents"))}</h3>'
        f'<table class="rcpt"><tr>{head}</tr>' + "\n".join(rows) + "</table>"
    )


def _bcc_mark(d: DocumentView, address: str, lc: Locale) -> str:
    """The mark after a recipient no header of the letter names, so no reader takes them for To or Cc."""
    blind = {a.lower() for a in d.bcc}
    if address.lower() in blind or d.bcc_copy_of is not None:
        return " " + escape(lc.t("(Bcc)"))
    return ""


def _recipient_state(r: RecipientView, lc: Locale) -> str:
    """The overview's word for a recipient: what the receipts proved, else what the relay answered."""
    if r.delivery is not None:
        return lc.t(DELIVERY_STATES.get(r.delivery.state, r.delivery.state))
    return lc.t(RECIPIENT_STATES.get(r.state, r.state))


def _document_item(item: Item, d: DocumentView, lc: Locale) -> str:
    """An outgoing document on the case's timeline: to whom, the relay's answers, its events."""
    cls = DOCUMENT_EMPHASIS.get(d.state, "muted")
    badge = f'<span class="badge {cls}">{escape(lc.t(DOCUMENT_STATES.get(d.state, d.state)))}</span>'
    meta = [
        escape(lc.t("outbox id {id}", id=d.id)),
        _e(f"Message-ID <{d.message_id}>"),
        escape(_count(lc, d.attempts, "{n} attempt", "{n} attempts")),
        escape(lc.t("signed ({scheme})", scheme=d.signed) if d.signed != "none" else lc.t("not signed")),
        escape(lc.t("encrypted") if d.encrypted else lc.t("not encrypted")),
    ]
    if d.resent:
        meta.append(f"<b>{escape(lc.t('resent after a crash (same Message-ID)'))}</b>")
    if d.sent_path:
        meta.append(_e(lc.t("sent copy: {path}", path=d.sent_path)))
    if d.bcc_copy_of is not None:
        copied = f'<a href="#document-{escape(d.bcc_copy_of)}">{escape(d.bcc_copy_of)}</a>'
        meta.append(escape(lc.t("blind copy (Bcc) of {id}", id="{id}")).replace("{id}", copied))
    warning = escape(lc.t("Warning:"))
    notes = []
    for refusal in d.key_refusals:
        text = _e(lc.t("a recipient's key was not used: {reason}", reason=refusal))
        notes.append(f'<div class="warning"><b>{warning}</b> {text}</div>')
    if d.last_reply and d.state in ("deferred", "bounced", "hold"):
        last = _e(lc.t("last answer: {reply}", reply=d.last_reply))
        notes.append(f'<div class="warning"><b>{warning}</b> {last}</div>')
    head = "".join(
        f"<th>{escape(lc.t(h))}</th>" for h in ("Recipient", "State", "Relay's reply", "Queue id", "Delivery")
    )
    parts = [
        f'<div class="item" id="document-{escape(d.id)}">',
        f"<h3>{escape(lc.t('Outgoing document'))} {escape(lc.time(d.queued_at))}{badge}</h3>",
        f"<div><b>{escape(lc.t('Subject:'))}</b> {_e(d.title)}</div>",
        f'<div class="meta">{" · ".join(meta)}</div>',
        *notes,
        f'<table class="rcpt"><tr>{head}</tr>',
        *(_recipient_row(r, lc, _bcc_mark(d, r.address, lc)) for r in d.recipients),
        "</table><table>",
        *(_row(e, lc) for e in item.entries),
        "</table></div>",
    ]
    return "\n".join(parts)


def _recipient_row(r: RecipientView, lc: Locale, mark: str = "") -> str:
    cls = {"sent": "ok", "bounced": "warn"}.get(r.state, "")
    return (
        f'<tr class="{cls}"><td>{_e(r.address)}{mark}</td>'
        f'<td class="what">{escape(lc.t(RECIPIENT_STATES.get(r.state, r.state)))}</td>'
        f'<td class="reply">{_e(r.reply or "–")}</td><td>{_e(r.queue_id or "–")}</td>'
        f"<td>{delivery_cell(r.delivery, lc)}</td></tr>"
    )


def delivery_cell(delivery: DeliveryInfo | None, lc: Locale) -> str:
    """One recipient's delivery, escaped for the table: where issue 13's delivery states are shown."""
    return _e(delivery_text(delivery, lc))


def _row(e: AuditEntry, lc: Locale) -> str:
    cls = EMPHASIS.get(e.event, "")
    return (
        f'<tr class="{cls}"><td class="when"><time datetime="{escape(e.at)}">{escape(lc.time(e.at))}</time><br>'
        f'<span class="seq">{escape(lc.t("entry {seq}", seq=e.seq))}</span></td>'
        f'<td class="what">{_e(describe(e, lc))}</td><td class="who">{_e(actor_text(e.actor, lc))}</td></tr>'
    )


def _footer(v: VerifyReport | None, lc: Locale) -> str:
    text = escape(
        lc.t(
            "Each entry of the record holds a checksum of the one before it, and the gateway signs the chain "
            "regularly with its audit key; the command {command} re-checks all of it."
        )
    ).replace("{command}", "<code>poststelle audit verify</code>")
    if v is not None:
        text += " " + escape(lc.t("Last entry checksum:")) + f" <code>{escape(v.head_hash)}</code>"
        if v.public_key_id:
            text += "; " + escape(lc.t("audit key id")) + f" <code>{escape(v.public_key_id)}</code>"
        text += "."
    return f"<footer>{text}</footer>"
