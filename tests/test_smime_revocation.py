"""Revocation fails closed: only a CRL that passes every RFC 5280 rule can make a certificate good.

CRLs, CAs and signers are made in the test run (support/crl_pki.py) on top of the test PKI.
Each test looks at the verdict and at ``signature.revocation``, the evidence it carries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa
from support.crl_pki import certificate, crl, dp, idp, key_usage, revoked, signer
from support.smime_pki import (
    DAY,
    NOW,
    Party,
    TestPKI,
    _name,
    _rsa,
    headers,
    mime_text,
    multipart_signed,
    sign_detached_as_of,
)

from gateway.unwrap import UnwrapContext, unwrap
from gateway.unwrap.smime.handler import SmimeHandler, SmimeMaterial
from gateway.unwrap.smime.pki import Validator
from gateway.unwrap.verdict import Verdict

R = x509.ReasonFlags
HOUR = dt.timedelta(hours=1)


def context(
    pki: TestPKI,
    crls: Sequence[x509.CertificateRevocationList],
    *,
    mode: Any = "if-configured",
    grace: dt.timedelta = dt.timedelta(0),
    allow_sha1: bool = False,
) -> UnwrapContext:
    material = SmimeMaterial(
        anchors=(pki.root.cert,),
        crls=tuple(crls),
        revocation=mode,
        crl_grace=grace,
        allow_sha1=allow_sha1,
        configured=True,
    )
    return UnwrapContext([SmimeHandler(material)])


def verify(
    party: Party, ctx: UnwrapContext, *, at: dt.datetime = NOW, extra: Sequence[x509.Certificate] = ()
) -> Verdict:
    inner = mime_text()
    carrier = Party(party.name, party.key, party.cert, party.email, [*party.chain, *extra])
    raw = multipart_signed(headers(party.email or "", date=NOW), inner, sign_detached_as_of(carrier, inner))
    return unwrap(raw, ctx, at=at).verdict


def evidence(verdict: Verdict) -> dict[str, Any]:
    rev = verdict.signature.to_json().get("revocation")
    assert rev is not None, "the verdict carries no revocation evidence"
    return rev  # type: ignore[no-any-return]


def status_of(verdict: Verdict, cert: x509.Certificate) -> dict[str, Any]:
    for item in evidence(verdict)["certificates"]:
        if item["subject"] == cert.subject.rfc4514_string() and item["serial"] == format(cert.serial_number, "x"):
            return item  # type: ignore[no-any-return]
    raise AssertionError(f"no evidence for {cert.subject.rfc4514_string()}")


# --- parties (module scope: keys are the slow part) ------------------------------------------


@pytest.fixture(scope="module")
def dora(pki: TestPKI) -> Party:
    """A signer whose certificate names a distribution point (never fetched here)."""
    return signer("Dora", "dora@example.org", pki.inter, dps=[dp("http://crl.example.org/inter.crl")])


@pytest.fixture(scope="module")
def inter_b(pki: TestPKI) -> Party:
    return certificate("Intermediate B", _rsa(2048, "crl-inter-b"), pki.root, ca=True)


@pytest.fixture(scope="module")
def bea(inter_b: Party) -> Party:
    return signer("Bea", "bea@example.org", inter_b)


# --- evidence and plain revocation -------------------------------------------------------------


def test_good_path_records_the_crl_that_was_checked_for_each_certificate(pki: TestPKI) -> None:
    v = verify(pki["sender"], context(pki, [pki.crl, pki.root_crl]))
    assert v.verdict == "verified", v.reasons
    rev = evidence(v)
    assert rev["mode"] == "if-configured"
    leaf, inter = rev["certificates"]
    assert leaf["subject"] == pki["sender"].cert.subject.rfc4514_string()
    assert leaf["status"] == "good"
    assert leaf["crls"] == [
        {
            "issuer": pki.inter.cert.subject.rfc4514_string(),
            "number": 1,
            "this_update": (NOW - DAY).isoformat(),
            "next_update": (NOW + 30 * DAY).isoformat(),
            "source": "crl_files",
            "delta": False,
        }
    ]
    assert inter["status"] == "good"
    assert inter["crls"][0]["issuer"] == pki.root.cert.subject.rfc4514_string()


def test_revoked_signer_is_refused_with_the_crl_that_revoked_it(pki: TestPKI) -> None:
    v = verify(pki["revoked"], context(pki, [pki.crl, pki.root_crl]))
    assert v.verdict == "unverified" and "cert-revoked" in v.reasons
    leaf = status_of(v, pki["revoked"].cert)
    assert leaf["status"] == "revoked"
    assert leaf["revoked_at"] == (NOW - 2 * DAY).isoformat()
    assert leaf["crls"][0]["number"] == 1


def test_revoked_intermediate_is_refused(pki: TestPKI, inter_b: Party, bea: Party) -> None:
    root_crl = crl(pki.root, [revoked(inter_b.cert, reason=R.ca_compromise)], number=2)
    v = verify(bea, context(pki, [root_crl, crl(inter_b)]))
    assert v.signature.status == "untrusted" and "cert-revoked" in v.reasons
    assert status_of(v, bea.cert)["status"] == "good"
    inter = status_of(v, inter_b.cert)
    assert inter["status"] == "revoked" and inter["revocation_reason"] == "cACompromise"


# --- unusable CRLs: the certificate is not proven unrevoked --------------------------------


def test_crl_with_a_bad_signature_leaves_revocation_unknown(pki: TestPKI) -> None:
    forged = crl(pki.inter, [], key=pki.rogue_root.key)  # the intermediate's name, another key
    v = verify(pki["sender"], context(pki, [forged, pki.root_crl]))
    assert v.verdict == "unverified" and "revocation-unknown" in v.reasons
    leaf = status_of(v, pki["sender"].cert)
    assert leaf["status"] == "unknown" and "crl-bad-signature" in leaf["problems"]


def test_crl_in_another_issuers_name_is_not_used(pki: TestPKI) -> None:
    """Signed with the intermediate's key, but issued in another CA's name."""
    other = crl(pki.inter, [], issuer_name=_name("Some Other CA"))
    v = verify(pki["sender"], context(pki, [other, pki.root_crl]))
    assert "revocation-unknown" in v.reasons
    assert "crl-issuer-mismatch" in status_of(v, pki["sender"].cert)["problems"]


def test_crl_signed_by_a_ca_without_crl_sign_is_not_used(pki: TestPKI) -> None:
    ca = certificate("No CRL Sign CA", _rsa(2048, "crl-no-crlsign"), pki.root, ca=True, usage=key_usage(cert_sign=True))
    leaf = signer("Nele", "nele@example.org", ca)
    v = verify(leaf, context(pki, [crl(ca), pki.root_crl]))
    assert "revocation-unknown" in v.reasons
    assert "crl-signer-not-authorised" in status_of(v, leaf.cert)["problems"]


@pytest.mark.parametrize("where", ["crl", "entry"])
def test_crl_with_an_unknown_critical_extension_is_not_used(pki: TestPKI, where: str) -> None:
    entries = [revoked(pki["expired"].cert, critical_unknown=where == "entry")]
    odd = crl(pki.inter, entries, critical_unknown=where == "crl")
    v = verify(pki["sender"], context(pki, [odd, pki.root_crl]))
    assert "revocation-unknown" in v.reasons
    assert "crl-unknown-critical-extension" in status_of(v, pki["sender"].cert)["problems"]


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("only-ca-certificates", "crl-scope-mismatch"),
        ("only-attribute-certificates", "crl-scope-mismatch"),
        ("other-distribution-point", "crl-scope-mismatch"),
        ("only-some-reasons", "crl-reasons-incomplete"),
    ],
)
def test_crl_whose_scope_does_not_cover_the_signer_is_not_used(
    pki: TestPKI, dora: Party, case: str, problem: str
) -> None:
    scope = {
        "only-ca-certificates": idp(ca=True),
        "only-attribute-certificates": idp(attributes=True),
        "other-distribution-point": idp("http://crl.example.org/other.crl"),
        "only-some-reasons": idp(reasons=frozenset({R.key_compromise})),
    }[case]
    v = verify(dora, context(pki, [crl(pki.inter, idp=scope), pki.root_crl]))
    assert v.verdict == "unverified" and "revocation-unknown" in v.reasons
    assert problem in status_of(v, dora.cert)["problems"]


def test_crl_for_user_certificates_does_not_cover_an_intermediate(pki: TestPKI) -> None:
    users_only = crl(pki.root, idp=idp(user=True), number=2)
    v = verify(pki["sender"], context(pki, [pki.crl, users_only]))
    assert "revocation-unknown" in v.reasons
    inter = status_of(v, pki.inter.cert)
    assert inter["status"] == "unknown" and "crl-scope-mismatch" in inter["problems"]


def test_crls_whose_scope_covers_the_certificates_are_used(pki: TestPKI, dora: Party) -> None:
    """A matching point for user certificates, CA certificates only, reasons split in two CRLs."""
    half = frozenset({R.key_compromise, R.ca_compromise})
    crls = [
        crl(pki.inter, idp=idp("http://crl.example.org/inter.crl", user=True, reasons=half)),
        crl(
            pki.inter,
            idp=idp(
                "http://crl.example.org/inter.crl",
                reasons=frozenset(set(R) - half - {R.unspecified, R.remove_from_crl}),
            ),
            number=2,
        ),
        crl(pki.root, idp=idp(ca=True)),
    ]
    v = verify(dora, context(pki, crls))
    assert v.verdict == "verified", v.reasons
    assert len(status_of(v, dora.cert)["crls"]) == 2


# --- indirect CRLs ------------------------------------------------------------------------------


def test_indirect_crl_revokes_through_the_crl_issuer_named_by_the_certificate(pki: TestPKI) -> None:
    crl_signer = certificate("CRL Signer", _rsa(2048, "crl-signer"), pki.inter, usage=key_usage(crl_sign=True))
    ida = signer("Ida", "ida@example.org", pki.inter, dps=[dp(crl_issuer=crl_signer.cert.subject)])
    indirect = idp(indirect=True)
    listing = crl(crl_signer, [revoked(ida.cert, cert_issuer=pki.inter.cert.subject)], idp=indirect)
    v = verify(ida, context(pki, [listing, pki.root_crl]), extra=[crl_signer.cert])
    assert "cert-revoked" in v.reasons
    assert status_of(v, ida.cert)["crls"][0]["issuer"] == crl_signer.cert.subject.rfc4514_string()
    clean = crl(crl_signer, [revoked(pki["sender"].cert, cert_issuer=pki.inter.cert.subject)], idp=indirect, number=2)
    v = verify(ida, context(pki, [clean, pki.root_crl]), extra=[crl_signer.cert])
    assert v.verdict == "verified", v.reasons


def test_indirect_crl_from_a_certificate_without_crl_sign_is_not_used(pki: TestPKI) -> None:
    crl_signer = certificate("Not A CRL Signer", _rsa(2048, "crl-signer"), pki.inter, usage=key_usage(sign=True))
    ivo = signer("Ivo", "ivo@example.org", pki.inter, dps=[dp(crl_issuer=crl_signer.cert.subject)])
    listing = crl(crl_signer, [], idp=idp(indirect=True))
    v = verify(ivo, context(pki, [listing, pki.root_crl]), extra=[crl_signer.cert])
    assert "revocation-unknown" in v.reasons
    assert "crl-signer-not-authorised" in status_of(v, ivo.cert)["problems"]


# --- time ---------------------------------------------------------------------------------------


def test_crl_past_its_next_update_leaves_revocation_unknown_unless_within_grace(pki: TestPKI) -> None:
    stale = crl(pki.inter, this_update=NOW - 2 * DAY, next_update=NOW - HOUR)
    v = verify(pki["sender"], context(pki, [stale, pki.root_crl]))
    assert v.verdict == "unverified"
    assert {"revocation-unknown", "crl-not-current"} <= set(v.reasons)
    assert status_of(v, pki["sender"].cert)["crls"][0]["next_update"] == (NOW - HOUR).isoformat()
    lenient = verify(pki["sender"], context(pki, [stale, pki.root_crl], grace=2 * HOUR))
    assert lenient.verdict == "verified", lenient.reasons


def test_crl_issued_after_the_validation_time_revokes_but_cannot_prove_good(pki: TestPKI) -> None:
    at = NOW - 5 * DAY
    later = crl(pki.inter, [revoked(pki["sender"].cert, when=NOW - 8 * DAY)], number=3)
    v = verify(pki["sender"], context(pki, [later]), at=at)
    assert status_of(v, pki["sender"].cert)["status"] == "revoked"
    v = verify(pki["sender"], context(pki, [crl(pki.inter, number=3)]), at=at)
    leaf = status_of(v, pki["sender"].cert)
    assert leaf["status"] == "unknown" and "crl-not-yet-valid" in leaf["problems"]


def test_a_cached_path_does_not_outlive_its_crl(pki: TestPKI) -> None:
    validator = Validator([pki.root.cert], [pki.crl, pki.root_crl])
    sender, chain = pki["sender"].cert, [pki.inter.cert]
    assert validator.validate(sender, chain, NOW).ok
    later = validator.validate(sender, chain, NOW + 31 * DAY)  # certificates still valid
    assert not later.ok and "revocation-unknown" in later.reasons


def test_revocation_takes_effect_at_its_date_for_a_validator_that_answered_before(pki: TestPKI) -> None:
    sender, chain = pki["sender"].cert, [pki.inter.cert]
    future = crl(pki.inter, [revoked(sender, when=NOW + HOUR)], number=4)
    validator = Validator([pki.root.cert], [future, pki.root_crl])
    assert validator.validate(sender, chain, NOW).ok
    assert validator.validate(sender, chain, NOW + 30 * dt.timedelta(minutes=1)).ok
    later = validator.validate(sender, chain, NOW + 2 * HOUR)
    assert not later.ok and later.reasons == ("cert-revoked",)
    assert later.revocation[0].revoked_at == NOW + HOUR


# --- delta CRLs ---------------------------------------------------------------------------------


def test_delta_crl_without_its_base_is_not_used(pki: TestPKI) -> None:
    delta = crl(pki.inter, number=6, delta_of=5)
    v = verify(pki["sender"], context(pki, [delta, pki.root_crl]))
    assert "revocation-unknown" in v.reasons
    assert "crl-delta-without-base" in status_of(v, pki["sender"].cert)["problems"]


def test_delta_crl_that_releases_a_hold_makes_the_certificate_good(pki: TestPKI) -> None:
    hal = signer("Hal", "hal@example.org", pki.inter)
    base = crl(pki.inter, [revoked(hal.cert, reason=R.certificate_hold)], number=5)
    held = verify(hal, context(pki, [base, pki.root_crl]))
    assert "cert-revoked" in held.reasons
    assert status_of(held, hal.cert)["revocation_reason"] == "certificateHold"
    delta = crl(pki.inter, [revoked(hal.cert, reason=R.remove_from_crl)], number=6, delta_of=5)
    released = verify(hal, context(pki, [base, delta, pki.root_crl]))
    assert released.verdict == "verified", released.reasons
    assert [c["delta"] for c in status_of(released, hal.cert)["crls"]] == [False, True]


# --- modes --------------------------------------------------------------------------------------


def test_require_mode_needs_a_usable_crl_for_every_certificate(pki: TestPKI) -> None:
    v = verify(pki["sender"], context(pki, [pki.crl], mode="require"))
    assert v.verdict == "unverified" and "revocation-unknown" in v.reasons
    assert status_of(v, pki["sender"].cert)["status"] == "good"
    inter = status_of(v, pki.inter.cert)
    assert inter["status"] == "unknown" and inter["problems"] == ["no-crl"]


def test_if_configured_mode_checks_certificates_whose_issuer_has_a_crl(pki: TestPKI) -> None:
    v = verify(pki["sender"], context(pki, [pki.crl]))
    assert v.verdict == "verified", v.reasons
    assert status_of(v, pki["sender"].cert)["status"] == "good"
    assert status_of(v, pki.inter.cert)["status"] == "not-checked"


def test_off_mode_checks_nothing_and_the_verdict_says_so(pki: TestPKI) -> None:
    v = verify(pki["revoked"], context(pki, [pki.crl, pki.root_crl], mode="off"))
    assert v.verdict == "verified", v.reasons
    rev = evidence(v)
    assert rev["mode"] == "off"
    assert [c["status"] for c in rev["certificates"]] == ["not-checked", "not-checked"]


# --- one algorithm policy for CRLs and CA keys ---------------------------------------------------


def test_sha1_crl_is_used_only_when_sha1_is_allowed(pki: TestPKI) -> None:
    from support.crl_pki import sha1_crl

    old = sha1_crl(pki.crl, pki.inter.key)  # type: ignore[arg-type]
    strict = verify(pki["sender"], context(pki, [old, pki.root_crl]))
    assert "revocation-unknown" in strict.reasons
    assert "sha1-rejected" in status_of(strict, pki["sender"].cert)["problems"]
    lenient = verify(pki["sender"], context(pki, [old, pki.root_crl], allow_sha1=True))
    assert lenient.verdict == "verified", lenient.reasons


def test_dsa_certificate_authority_is_unsupported(pki: TestPKI) -> None:
    ca = certificate("DSA CA", dsa.generate_private_key(2048), pki.root, ca=True)
    v = verify(signer("Dagmar", "dagmar@example.org", ca), context(pki, []))
    assert v.signature.status == "untrusted"
    assert "unsupported-algorithm" in v.reasons
