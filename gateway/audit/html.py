"""The HTML audit report: one self-contained file a reviewer opens in any browser.

Per case, a timeline of the correspondence and what happened to each item, in plain
sentences (``audit.report.describe``). No scripts, no external resources (a
Content-Security-Policy forbids loading any), inline CSS only, every value escaped:
subjects, addresses and file names come from strangers' e-mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape

from gateway.audit.findings import VerifyReport
from gateway.audit.report import VERDICTS, AuditQuery, actor_text, describe, reasons_text, warnings_text
from gateway.records.chain import AuditEntry
from gateway.records.messages import MessageRecord

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
            if e.event == "fetched" and e.details.get("internaldate"):
                return str(e.details["internaldate"])
        return self.entries[0].at

    @property
    def status(self) -> tuple[str, str] | None:
        for e in reversed(self.entries):
            if e.event in STATUS:
                return STATUS[e.event]
        return None

    @property
    def verdict(self) -> str | None:
        for e in reversed(self.entries):
            if e.event == "verdict":
                name = str(e.details.get("verdict"))
                words = reasons_text(e.details.get("reasons"))
                return VERDICTS.get(name, name) + (f" ({words})" if words else "")
        return None

    @property
    def warnings(self) -> list[str]:
        """The latest verdict's warnings, in words."""
        for e in reversed(self.entries):
            if e.event == "verdict":
                return warnings_text(e.details.get("warnings"))
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


def when(at: str) -> str:
    """``2026-11-25T05:49:21.123456Z`` -> ``2026-11-25 05:49:21 UTC``."""
    return at[:19].replace("T", " ") + " UTC" if len(at) >= 19 else at


def render_html(
    entries: Iterable[AuditEntry],
    *,
    records: Mapping[str, MessageRecord],
    query: AuditQuery,
    generated_at: str,
    verification: VerifyReport | None,
    title: str = "Poststelle audit report",
) -> str:
    entry_list = list(entries)
    by_case, general = group_items(entry_list, records)
    cases = sorted((c for c in by_case if c is not None), key=str.casefold)
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{_scope(entry_list, query, generated_at)}</p>',
        _integrity(verification),
    ]
    if cases or None in by_case:
        out.append('<p><b>Contents</b></p><ul class="toc">')
        for i, case in enumerate(cases, start=1):
            n = len(by_case[case])
            out.append(f'<li><a href="#case-{i}">Case {escape(case)}</a> ({n} item{"s" if n != 1 else ""})</li>')
        if None in by_case:
            out.append(f'<li><a href="#unassigned">Not assigned to a case</a> ({len(by_case[None])})</li>')
        if general:
            out.append('<li><a href="#gateway">Gateway events</a></li>')
        out.append("</ul>")
    if not entry_list:
        out.append('<div class="box none">No entries match the filters.</div>')
    for i, case in enumerate(cases, start=1):
        items = by_case[case]
        out.append(f'<section id="case-{i}"><h2>Case {escape(case)}</h2>')
        out.append(f'<p class="sub">{len(items)} item{"s" if len(items) != 1 else ""}, in order of arrival.</p>')
        out.extend(_item(item) for item in items)
        out.append("</section>")
    if None in by_case:
        out.append('<section id="unassigned"><h2>Not assigned to a case</h2>')
        out.append('<p class="sub">Items without a recognised case reference, and items held in quarantine.</p>')
        out.extend(_item(item) for item in by_case[None])
        out.append("</section>")
    if general:
        out.append('<section id="gateway"><h2>Gateway events</h2><div class="item"><table>')
        out.extend(_row(e) for e in general)
        out.append("</table></div></section>")
    out.append(_footer(verification))
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _scope(entries: list[AuditEntry], query: AuditQuery, generated_at: str) -> str:
    text = f"Generated {escape(when(generated_at))}. {len(entries)} recorded event{'s' if len(entries) != 1 else ''}"
    if entries:
        text += f" from {escape(when(entries[0].at))} to {escape(when(entries[-1].at))}"
    filters = query.describe()
    if filters:
        shown = ", ".join(f"{k} = {v if not isinstance(v, tuple) else ' / '.join(v)}" for k, v in filters.items())
        text += f". Selected by: {escape(shown)}"
    return text + ". All times are UTC."


def _integrity(v: VerifyReport | None) -> str:
    if v is None:
        return '<div class="box none">The integrity of the record was not checked for this report.</div>'
    facts = (
        f"{v.entries} entries in the record, {v.checkpoints} signed checkpoint{'s' if v.checkpoints != 1 else ''}, "
        f"sealed up to entry {v.sealed_up_to}; {v.case_entries} filed item{'s' if v.case_entries != 1 else ''} "
        f"and {v.quarantine_entries} in quarantine compared with their checksums."
    )
    if v.unsealed:
        facts += (
            f" The newest {v.unsealed} entr{'ies are' if v.unsealed != 1 else 'y is'} not yet covered by a signed "
            "checkpoint (normal until the gateway's next run ends)."
        )
    if v.ok:
        return (
            '<div class="box ok"><b>Integrity check passed.</b> The record is complete and unaltered as far as '
            f"it can be checked: {escape(facts)}</div>"
        )
    shown = v.breaks[:50]
    lines = "".join(f"<li>{escape(_break_text(b.to_json()))}</li>" for b in shown)
    more = f"<li>… and {len(v.breaks) - len(shown)} more</li>" if len(v.breaks) > len(shown) else ""
    return (
        f'<div class="box bad"><b>Integrity check FAILED: {len(v.breaks)} problem'
        f"{'s' if len(v.breaks) != 1 else ''} found.</b> The record below may have been altered. "
        f"{escape(facts)}<ul>{lines}{more}</ul></div>"
    )


def _break_text(b: dict[str, object]) -> str:
    text = f"{b['kind']}: {b['detail']}"
    if b.get("seq") is not None:
        text = f"entry {b['seq']}: " + text
    if b.get("file"):
        text += f" [{b['file']}]"
    return text


def _item(item: Item) -> str:
    status = item.status
    badge = f'<span class="badge {status[1]}">{escape(status[0])}</span>' if status else ""
    label = "Letter received" if item.kind == "message" else item.kind.capitalize()
    meta = [f"{item.kind} {escape(item.id)}"]
    if item.sender:
        meta.append(f"from {escape(item.sender)}")
    if item.verdict:
        meta.append(f"signature check: {escape(item.verdict)}")
    parts = [
        '<div class="item">',
        f"<h3>{label} {escape(when(item.received))}{badge}</h3>",
        f"<div><b>Subject:</b> {escape(item.subject) if item.subject else '<i>(unknown)</i>'}</div>",
        f'<div class="meta">{" · ".join(meta)}</div>',
        *(f'<div class="warning"><b>Warning:</b> {escape(w)}</div>' for w in item.warnings),
        "<table>",
        *(_row(e) for e in item.entries),
        "</table></div>",
    ]
    return "\n".join(parts)


def _row(e: AuditEntry) -> str:
    cls = EMPHASIS.get(e.event, "")
    return (
        f'<tr class="{cls}"><td class="when">{escape(when(e.at))}<br><span class="seq">entry {e.seq}</span></td>'
        f'<td class="what">{escape(describe(e))}</td><td class="who">{escape(actor_text(e.actor))}</td></tr>'
    )


def _footer(v: VerifyReport | None) -> str:
    text = (
        "Each entry of the record holds a checksum of the one before it, and the gateway signs the chain "
        "regularly with its audit key; the command <code>poststelle audit verify</code> re-checks all of it."
    )
    if v is not None:
        text += f" Last entry checksum: <code>{escape(v.head_hash)}</code>"
        if v.public_key_id:
            text += f"; audit key id <code>{escape(v.public_key_id)}</code>"
        text += "."
    return f"<footer>{text}</footer>"
