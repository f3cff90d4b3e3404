"""De-Mail at intake: a proven "absenderbestätigt" De-Mail is verified and routed, a forged one quarantined."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Env, mailbox_entry, write_config
from support.demail_provider import build_message, demail_fields, provider_pki, tamper_body

from gateway.demo.dovecot import Dovecot
from gateway.statedir import init_storage

SUBJECT = "Az. 63-BV-2026-0412 Widerspruch"


def demail_env(dovecot: Dovecot, root: Path, user: str) -> Env:
    anchor = provider_pki().write_anchor(root)
    extra = f'\n[demail]\nenabled = true\nprovider_trust_anchors = ["{anchor}"]\n'
    env = Env(dovecot, user, root, write_config(root, [mailbox_entry(dovecot, user, root)], extra=extra))
    init_storage(env.config)
    return env


def demail(subject: str = SUBJECT) -> bytes:
    fields = [(n, subject if n == "Subject" else v) for n, v in demail_fields()]
    return build_message(fields=fields)


def manifests(root: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*/manifest.json"))]


def test_a_proven_authoritative_demail_is_verified_for_its_sender_and_routed(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = demail_env(dovecot, tmp_path, new_user())
    env.append(demail())
    env.cli("run", "--once", check=True)
    (entry,) = env.entries()
    assert entry.parent.name == "63-BV-2026-0412"
    verdict = json.loads((entry / "verification.json").read_text())
    assert verdict["verdict"] == "verified" and verdict["reasons"] == []
    assert verdict["demail"]["integrity"] == "valid" and verdict["demail"]["authoritative_proven"] is True
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["demail"]["authoritative_proven"] is True and manifest["demail"]["private"] is False
    assert env.cli("audit", "verify").returncode == 0
    log = env.cli("audit", "log").stdout
    assert "De-Mail checked: provider signature valid; absenderbestätigt: proven; persönlich: no" in log


def test_a_forged_authoritative_demail_is_quarantined_and_says_why(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = demail_env(dovecot, tmp_path, new_user())
    env.append(tamper_body(demail()))
    env.cli("run", "--once", check=True)
    assert env.entries() == []
    (entry,) = env.quarantined()
    reasons = json.loads((entry / "reason.json").read_text())["reasons"]
    assert "demail-authoritative-unproven" in reasons
    verdict = json.loads((entry / "verification.json").read_text())
    assert verdict["verdict"] != "verified" and verdict["demail"]["integrity"] == "invalid"


def test_inspect_explains_the_integrity_check_line_by_line(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    env = demail_env(dovecot, tmp_path, new_user())
    good, bad = tmp_path / "good.eml", tmp_path / "bad.eml"
    good.write_bytes(demail())
    bad.write_bytes(tamper_body(demail()))
    out = env.cli("inspect", str(good), str(bad)).stdout
    assert f"De-Mail integrity of {good}: valid" in out and f"De-Mail integrity of {bad}: invalid" in out
    assert "bh" in out and "demail-authoritative-unproven" in out


def test_a_route_that_takes_only_authoritative_demails_quarantines_a_plain_letter(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    from conftest import ROUTES

    anchor = provider_pki().write_anchor(tmp_path)
    name = 'name = "building permits"'
    routes = ROUTES.replace(name, f"{name}\nrequire_demail_authoritative = true")
    user = new_user()
    extra = f'\n[demail]\nenabled = true\nprovider_trust_anchors = ["{anchor}"]\n'
    env = Env(
        dovecot,
        user,
        tmp_path,
        write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)], extra=extra, routes=routes),
    )
    init_storage(env.config)
    plain = (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {SUBJECT}\r\nMessage-ID: <p1@example.org>\r\n"
        "Date: Wed, 02 Dec 2026 09:00:00 +0100\r\n\r\nHallo\r\n"
    ).encode()
    env.append(plain, demail())
    env.cli("run", "--once", check=True)
    assert [e.parent.name for e in env.entries()] == ["63-BV-2026-0412"]
    (entry,) = env.quarantined()
    assert "policy-demail-authoritative-required" in json.loads((entry / "reason.json").read_text())["reasons"]
