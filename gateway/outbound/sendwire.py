"""The send socket's wire format: a clerk's letter in one request, one answer back.

A request is ``MAGIC``, a 4-byte big-endian length, a JSON header of that length, then
each attachment's bytes in the order and with the sizes the header lists. Files travel
as bytes, not as paths: the daemon never opens a path a client names, so a clerk cannot
make it attach a file only the daemon may read. The answer is a 4-byte length and a JSON
object.

Reading is strict, as for any input from another account: unknown or missing fields,
wrong types, sizes that do not add up, or more bytes than the limit allow are a
``WireError`` with the reason, and nothing is composed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAGIC = b"POSTSTELLE-SEND/1\n"
#: The JSON header's size at most: addresses, subject, body text and file names.
HEADER_LIMIT = 4 * 1024 * 1024
#: An answer's size at most (the ``--json`` summary of a letter).
ANSWER_LIMIT = 1024 * 1024
_LENGTH = struct.Struct(">I")
_DEMAIL_FLAGS = ("dispatch_confirmation", "receipt_confirmation", "retrieval_confirmation", "private", "authoritative")


class WireError(Exception):
    """A request or answer that does not follow the format; the message says what is wrong."""


@dataclass(frozen=True)
class SendRequest:
    """A clerk's letter as ``poststelle send`` was given it (the sender is always the authority)."""

    case: str
    to: tuple[str, ...]
    subject: str
    body: str = ""
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    attachments: tuple[tuple[str, bytes], ...] = ()  # (file name, bytes)
    demail: dict[str, bool] | None = None  # the De-Mail options, by DemailOptions field name
    dry_run: bool = False


def encode_request(req: SendRequest) -> bytes:
    """The request's bytes (header and files), ready to write to the socket."""
    header = {
        "case": req.case,
        "to": list(req.to),
        "cc": list(req.cc),
        "bcc": list(req.bcc),
        "subject": req.subject,
        "body": req.body,
        "attachments": [{"filename": name, "size": len(data)} for name, data in req.attachments],
        "demail": req.demail,
        "dry_run": req.dry_run,
    }
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    return b"".join((MAGIC, _LENGTH.pack(len(head)), head, *(data for _, data in req.attachments)))


Read = Callable[[int], bytes]


def _exactly(read: Read, n: int, what: str) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left:
        chunk = read(min(left, 1 << 20))
        if not chunk:
            raise WireError(f"the request ended inside {what}")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _json_block(read: Read, limit: int, what: str) -> Any:
    """A 4-byte length and that many bytes of JSON (``what`` names it in the error)."""
    (length,) = _LENGTH.unpack(_exactly(read, _LENGTH.size, f"the length of {what}"))
    if length > limit:
        raise WireError(f"{what} has {length} bytes, more than {limit}")
    try:
        return json.loads(_exactly(read, length, what).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"{what} is not JSON: {exc}") from None


def _strings(header: dict[str, Any], name: str, *, required: bool = False) -> tuple[str, ...]:
    value = header.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WireError(f"{name}: expected a list of strings")
    if required and not value:
        raise WireError(f"{name}: at least one address is needed")
    return tuple(value)


def _text(header: dict[str, Any], name: str) -> str:
    value = header.get(name)
    if not isinstance(value, str):
        raise WireError(f"{name}: expected a string")
    return value


def read_request(read: Read, max_bytes: int) -> SendRequest:
    """Read one request through ``read`` (a socket's ``recv``), at most ``max_bytes`` of files."""
    if _exactly(read, len(MAGIC), "its first line") != MAGIC:
        raise WireError("not a Poststelle send request (wrong first line)")
    header = _json_block(read, HEADER_LIMIT, "the header")
    if not isinstance(header, dict):
        raise WireError("the header is not a JSON object")
    known = {"case", "to", "cc", "bcc", "subject", "body", "attachments", "demail", "dry_run"}
    unknown = sorted(set(header) - known)
    if unknown:
        raise WireError(f"unknown fields: {', '.join(unknown)}")
    files = header.get("attachments", [])
    if not isinstance(files, list):
        raise WireError("attachments: expected a list")
    sizes: list[tuple[str, int]] = []
    for f in files:
        if not isinstance(f, dict) or set(f) != {"filename", "size"}:
            raise WireError("attachments: each must have exactly filename and size")
        name, size = f["filename"], f["size"]
        if not isinstance(name, str) or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise WireError("attachments: filename must be a string and size a non-negative integer")
        sizes.append((name, size))
    total = sum(size for _, size in sizes)
    if total > max_bytes:
        raise WireError(f"the files have {total} bytes, more than the message limit of {max_bytes}")
    demail = header.get("demail")
    if demail is not None and (
        not isinstance(demail, dict)
        or not set(demail) <= set(_DEMAIL_FLAGS)
        or not all(isinstance(v, bool) for v in demail.values())
    ):
        raise WireError(f"demail: expected an object of true/false flags among {', '.join(_DEMAIL_FLAGS)}")
    dry_run = header.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise WireError("dry_run: expected true or false")
    attachments = tuple((name, _exactly(read, size, f"file {name!r}")) for name, size in sizes)
    return SendRequest(
        case=_text(header, "case"),
        to=_strings(header, "to", required=True),
        cc=_strings(header, "cc"),
        bcc=_strings(header, "bcc"),
        subject=_text(header, "subject"),
        body=_text(header, "body") if "body" in header else "",
        attachments=attachments,
        demail=demail,
        dry_run=dry_run,
    )


def encode_answer(answer: dict[str, Any]) -> bytes:
    data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
    return _LENGTH.pack(len(data)) + data


def read_answer(read: Read) -> dict[str, Any]:
    """The daemon's answer: ``{"ok": true, "summary": {...}}`` or ``{"ok": false, "error": ..., "exit": n}``."""
    answer = _json_block(read, ANSWER_LIMIT, "the answer")
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise WireError("the answer is not a Poststelle send answer")
    return answer
