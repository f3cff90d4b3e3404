"""The outbox: documents queued durably, and the state changes people ask for.

``enqueue`` follows Postfix's cleanup: the exact bytes go to a spool file under
``state_dir`` (written under its final name, fdatasync, directory fsync) and the row with
its ``queued`` event commits after that; only then is the id returned. The row is what
publishes the file, atomically: nothing reads a spool file no row names, a row is
committed only once its file is complete on disk, and the file's sha256 is in the row and
checked before sending. So no temp name and rename are needed, and the directory's fsync
finds the new name already flushed with the file's data. A crash before the commit leaves
an unreferenced (perhaps partial) spool file and no promise, which the daemon sets aside
(``orphans.py``); after it, the document will be sent.

``hold``, ``release``, ``retry`` and ``cancel`` are a person's decisions: each checks the
state it found is still the state when it commits (the delivery agent may have taken the
document meanwhile), and records who acted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from gateway.clock import iso, utcnow
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.filing.durable import fsync_dir, makedirs_durable, write_file
from gateway.outbound.document import ComposedDocument
from gateway.outbound.doorbell import ring
from gateway.records.chain import AuditEvent
from gateway.records.deliveries import DeliveryStep, Evidence
from gateway.records.outbox import OutboxRecord, OutboxState, RecipientStatus
from gateway.records.store import StaleOutboxState, Store
from gateway.routing.casenames import case_folder_name, case_reference_from_folder
from gateway.statedir import outbox_dir, outbox_doorbell

__all__ = ["OutboxError", "cancel", "enqueue", "hold", "release", "retry", "spool_bytes"]

_ADDRESS = re.compile(r"[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+")
_MESSAGE_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without < > and spaces
SIGNED = ("smime", "openpgp", "none")
_ENVID = re.compile(r"[!-*,-<>-~]{1,100}")  # RFC 3461: xtext needs no escaping


class OutboxError(PermanentError):
    """A request the outbox refuses as asked (bad document, unknown id, wrong state)."""


def new_outbox_id() -> str:
    """12 hex digits, like message ids: the entry name of the sent copy ends in it."""
    return secrets.token_hex(6)


def _check(doc: ComposedDocument) -> None:
    if not _MESSAGE_ID.fullmatch(doc.message_id):
        raise OutboxError(f"invalid Message-ID {doc.message_id!r} (give it without angle brackets)")
    if not doc.recipients:
        raise OutboxError("no recipients")
    for addr in (doc.mail_from, *doc.recipients):
        if not _ADDRESS.fullmatch(addr):
            raise OutboxError(f"invalid envelope address {addr!r}")
        if not addr.isascii():
            raise OutboxError(f"{addr!r}: internationalised addresses (SMTPUTF8) are not supported yet")
    if len(set(doc.recipients)) != len(doc.recipients):
        raise OutboxError("a recipient is listed twice")
    if doc.envid is not None and not _ENVID.fullmatch(doc.envid):
        raise OutboxError(f"invalid ENVID {doc.envid!r} (printable ASCII without + or =, at most 100)")
    if doc.signed not in SIGNED:
        raise OutboxError(f"signed must be one of {', '.join(SIGNED)}, not {doc.signed!r}")
    if not doc.raw or b"\r\n\r\n" not in doc.raw:
        raise OutboxError("the message has no header/body separator (CRLF CRLF)")
    head = doc.raw.split(b"\r\n\r\n", 1)[0].lower()
    if f"\r\nmessage-id: <{doc.message_id}>".lower().encode() not in b"\r\n" + head:
        # A resend after a crash must be recognisable as the same message: the id recorded
        # is the id in the bytes.
        raise OutboxError(f"the message's Message-ID header is not <{doc.message_id}>")


def enqueue(config: Config, store: Store, doc: ComposedDocument, *, actor: str | None = None) -> str:
    """Queue ``doc`` (and its Bcc copies) durably and return its outbox id; nothing is queued when it raises.

    A letter and the separate messages of its Bcc recipients commit in one transaction: a
    crash never leaves the To/Cc message queued without the Bcc copies, or the reverse.
    """
    docs = (doc, *doc.bcc_copies)
    for d in docs:
        _check(d)
    folder = case_folder_name(doc.case, slash=config.routing.folder_slash)  # InvalidCaseReference
    case_ref = case_reference_from_folder(folder)
    spool = outbox_dir(config)
    makedirs_durable(spool)
    ids = [new_outbox_id() for _ in docs]
    paths: list[Path] = []
    try:
        records = []
        for i, (outbox_id, d) in enumerate(zip(ids, docs, strict=True)):
            path = spool / f"{outbox_id}.eml"
            paths.append(path)
            write_file(path, d.raw, mode=0o600)  # O_EXCL: never another document's file
            records.append(_queued(d, outbox_id, path, folder, case_ref, actor, copy_of=ids[0] if i else None))
        fsync_dir(spool)  # the new names, before any row points to them
        (rec, events, steps), *more = records
        store.outbox_enqueue(rec, events, deliveries=steps, more=more)
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)  # no row, no promise: the spool files go too
        raise
    ring(outbox_doorbell(config))
    return ids[0]


def _queued(
    doc: ComposedDocument,
    outbox_id: str,
    path: Path,
    folder: str,
    case_ref: str,
    actor: str | None,
    *,
    copy_of: str | None,
) -> tuple[OutboxRecord, list[AuditEvent], list[DeliveryStep]]:
    """The row, its ``queued`` event and its recipients' first delivery steps."""
    now = iso(utcnow())
    rec = OutboxRecord(
        id=outbox_id,
        message_id=doc.message_id,
        case_ref=case_ref,
        case_folder=folder,
        mail_from=doc.mail_from,
        sha256=hashlib.sha256(doc.raw).hexdigest(),
        size=len(doc.raw),
        path=str(path),
        signed=doc.signed,
        encrypted=doc.encrypted,
        envid=doc.envid or f"{outbox_id}.{secrets.token_hex(8)}",
        recipients=[RecipientStatus(r, updated_at=now) for r in doc.recipients],
        key_sources=list(doc.key_sources),
        created_at=now,
        updated_at=now,
        bcc=list(doc.bcc),
        bcc_copy_of=copy_of,
        key_refusals=list(doc.key_refusals),
    )
    event = AuditEvent(
        "queued",
        case=case_ref,
        document=outbox_id,
        actor=actor,
        details={
            "message_id": doc.message_id,
            "case_folder": folder,
            "mail_from": doc.mail_from,
            "recipients": list(doc.recipients),
            "sha256": rec.sha256,
            "size": rec.size,
            "signed": doc.signed,
            "encrypted": doc.encrypted,
            "key_sources": [list(k) for k in doc.key_sources],
            **({"bcc": list(doc.bcc)} if doc.bcc else {}),
            **({"bcc_copy_of": copy_of} if copy_of else {}),
            **({"key_refusals": list(doc.key_refusals)} if doc.key_refusals else {}),
            **({"demail": doc.demail, "envid": doc.envid} if doc.demail is not None else {}),
        },
    )
    # Each recipient's delivery record starts here, committed with the row it belongs to.
    evidence = Evidence("outbox", None, rec.sha256, f"Message-ID <{doc.message_id}>")
    steps = [DeliveryStep(outbox_id, r, "queued", now, evidence) for r in doc.recipients]
    return rec, [event], steps


def spool_bytes(rec: OutboxRecord) -> bytes:
    """The queued bytes, checked against the sha256 recorded at enqueue (fail closed)."""
    data = Path(rec.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != rec.sha256:
        raise OutboxError(f"spool file {rec.path} differs from what was queued (sha256 mismatch)")
    return data


# -- a person's decisions -----------------------------------------------------------------------
def _load(store: Store, outbox_id: str) -> OutboxRecord:
    rec = store.outbox_get(outbox_id)
    if rec is None:
        raise OutboxError(f"no outbox document with id {outbox_id!r}")
    return rec


def _change(
    store: Store,
    outbox_id: str,
    *,
    allowed: Sequence[OutboxState],
    to: OutboxState,
    event: str,
    actor: str,
    note: str | None,
    due_now: bool = False,
) -> OutboxRecord:
    rec = _load(store, outbox_id)
    if rec.state not in allowed:
        raise OutboxError(f"outbox {outbox_id} is {rec.state}; {event} needs {' or '.join(allowed)}")
    before = rec.state
    rec.state = to
    if due_now:
        rec.next_attempt_at = None
    details = {"from": before, "to": to, "message_id": rec.message_id, "note": note}
    try:
        store.outbox_save(
            rec, [AuditEvent(event, case=rec.case_ref, document=rec.id, actor=actor, details=details)], expect=[before]
        )
    except StaleOutboxState as exc:
        raise OutboxError(f"{exc}; nothing was changed, look again") from None
    return rec


def hold(store: Store, outbox_id: str, *, actor: str, note: str | None = None) -> OutboxRecord:
    """Stop a waiting document; it stays until released or cancelled."""
    return _change(store, outbox_id, allowed=("queued", "deferred"), to="hold", event="held", actor=actor, note=note)


def release(store: Store, outbox_id: str, *, actor: str, note: str | None = None) -> OutboxRecord:
    """Let a held document go: due at once."""
    return _change(
        store, outbox_id, allowed=("hold",), to="queued", event="released", actor=actor, note=note, due_now=True
    )


def retry(store: Store, outbox_id: str, *, actor: str, note: str | None = None) -> OutboxRecord:
    """Make a deferred document due now instead of at its scheduled time."""
    return _change(
        store,
        outbox_id,
        allowed=("deferred", "queued"),
        to="queued",
        event="retry-requested",
        actor=actor,
        note=note,
        due_now=True,
    )


def cancel(store: Store, outbox_id: str, *, actor: str, note: str | None = None) -> OutboxRecord:
    """Withdraw a document not yet sent (waiting or held); its spool file is kept for the record."""
    return _change(
        store,
        outbox_id,
        allowed=("queued", "deferred", "hold"),
        to="cancelled",
        event="cancelled",
        actor=actor,
        note=note,
    )
