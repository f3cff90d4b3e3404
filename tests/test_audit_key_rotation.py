"""The audit signing key can be rotated: the old key signs the handover, and the auditor's first key still proves all.

A real ledger and real Ed25519 keys; ``audit verify`` through the CLI, with the gateway's
public key file (every key, oldest first) and with only the key an auditor was given
before the rotation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.outbox import smtp_config
from typer.testing import CliRunner

from cli.main import app
from gateway.audit import rotate
from gateway.config import Config, load_config
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.signing import Checkpoint, Handover, Signer, key_id, load_or_create_key, verify_checkpoints
from gateway.records.sqlite.store import SQLiteStore
from gateway.records.store import AuditSettings
from gateway.statedir import audit_jsonl_path, audit_key_path, audit_public_key_path, ledger_path, lock_path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(smtp_config(tmp_path, port=2525))


def record(config: Config, n: int, what: str = "note") -> None:
    store = open_store(config)
    try:
        store.record_events(
            [AuditEvent("config-loaded", details={"path": f"{what}-{i}", "sha256": "0" * 64}) for i in range(n)]
        )
        store.seal()
        store.export_jsonl()
    finally:
        store.close()


def verify(config: Config, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["audit", "verify", "--config", str(config.path), "--json", *args])
    report: dict[str, object] = json.loads(result.stdout[result.stdout.index("{") :])
    report["exit"] = result.exit_code
    return report


def rotate_cli(config: Config) -> str:
    result = CliRunner().invoke(app, ["audit", "rotate-key", "--config", str(config.path)])
    assert result.exit_code == 0, result.output
    return result.output


def test_after_a_rotation_the_whole_trail_verifies_with_the_auditors_first_key(config: Config, tmp_path: Path) -> None:
    record(config, 5)
    auditors_key = tmp_path / "auditor.pub.pem"
    shutil.copyfile(audit_public_key_path(config), auditors_key)
    old_id = key_id(load_or_create_key(audit_key_path(config)))
    out = rotate_cli(config)
    new_id = key_id(load_or_create_key(audit_key_path(config)))
    assert new_id != old_id and f"{old_id} -> {new_id}" in out
    retired = audit_key_path(config).with_name(f"{audit_key_path(config).name}.retired-{old_id}")
    assert retired.stat().st_mode & 0o077 == 0
    assert audit_key_path(config).stat().st_mode & 0o777 == 0o600
    record(config, 5, "after")  # sealed by the new key
    for args in ((), ("--public-key", str(auditors_key))):
        report = verify(config, *args)
        assert report["exit"] == 0 and report["ok"] is True, report
    assert audit_public_key_path(config).read_text().count("BEGIN PUBLIC KEY") == 2
    exported = CliRunner().invoke(app, ["audit", "public-key", "--config", str(config.path)])
    assert exported.exit_code == 0 and exported.stdout.count("BEGIN PUBLIC KEY") == 2
    assert f"{old_id}, {new_id}" in exported.output


def test_a_checkpoint_signed_with_the_retired_key_after_the_handover_is_a_break(config: Config) -> None:
    record(config, 3)
    old = load_or_create_key(audit_key_path(config))
    rotate_cli(config)
    # Someone who kept the old key seals later entries with it.
    settings = AuditSettings(actor="daemon", signer=Signer(old), checkpoint_every=1000, export=None)
    forged = SQLiteStore(ledger_path(config), audit=settings)
    try:
        forged.record_events([AuditEvent("config-loaded", details={"path": "x", "sha256": "0" * 64})])
        forged.seal()
    finally:
        forged.close()
    report = verify(config)
    assert report["exit"] == 1
    assert "retired audit key" in json.dumps(report["breaks"])


def test_a_rotation_cut_short_stops_start_up_until_it_is_run_again(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(config, 2)

    def crash(*_: object) -> None:
        raise OSError(5, "simulated crash before the key files were swapped")

    monkeypatch.setattr(rotate, "_swap", crash)
    result = CliRunner().invoke(app, ["audit", "rotate-key", "--config", str(config.path)])
    assert result.exit_code == 1
    monkeypatch.undo()
    assert rotate.pending_rotation(config) is not None
    run = CliRunner().invoke(app, ["run", "--once", "--config", str(config.path)])
    assert run.exit_code == 2 and "rotate-key" in run.output
    rotate_cli(config)  # finishes the same handover
    assert rotate.pending_rotation(config) is None
    record(config, 2, "after")
    report = verify(config)
    assert report["exit"] == 0, report
    lines = audit_jsonl_path(config).read_text().splitlines()
    assert sum('"audit-key-rotated"' in line for line in lines) == 1, "the finished rotation is one handover"


def test_verify_since_a_head_before_the_rotation_follows_the_handover(config: Config) -> None:
    record(config, 4)
    head = verify(config)["head_hash"]
    assert isinstance(head, str)
    rotate_cli(config)
    record(config, 4, "after")
    report = verify(config, "--since", head)
    assert report["exit"] == 0 and report["ok"] is True, report


def test_rotation_is_refused_while_a_daemon_holds_the_state_directory(config: Config) -> None:
    record(config, 1)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
            "os.write(fd, b'4242\\n'); print('locked', flush=True); sys.stdin.read()",
            str(lock_path(config)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = audit_key_path(config).read_bytes()
        result = CliRunner().invoke(app, ["audit", "rotate-key", "--config", str(config.path)])
        assert result.exit_code == 1 and "not rotated" in result.output
        assert audit_key_path(config).read_bytes() == before and rotate.pending_rotation(config) is None
    finally:
        holder.communicate("")


def test_a_handover_not_sealed_by_the_key_it_replaces_is_a_break() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    first, second, intruder = (Ed25519PrivateKey.generate() for _ in range(3))
    hashes = {1: "a" * 64, 2: "b" * 64, 3: "c" * 64}
    # The handover at entry 2 names ``first`` as the key it replaces, but ``intruder`` ...
    handover = Handover(2, key_id(first), second.public_key())

    def cp(key: Ed25519PrivateKey, seq: int) -> Checkpoint:
        return Signer(key).checkpoint(seq, hashes[seq])

    ok = verify_checkpoints([cp(first, 2), cp(second, 3)], hashes, first.public_key(), [handover])
    assert ok[2] == []
    # ... an intruder's key is not trusted to seal anything, so nothing hands over to ``second``.
    bad = verify_checkpoints([cp(intruder, 2), cp(second, 3)], hashes, first.public_key(), [handover])
    assert [b.kind for b in bad[2]] == ["bad-checkpoint-signature", "bad-checkpoint-signature"]
    # The old key is refused once the handover is proven.
    late = verify_checkpoints([cp(first, 2), cp(first, 3)], hashes, first.public_key(), [handover])
    assert [b.kind for b in late[2]] == ["bad-checkpoint-signature"] and "retired" in late[2][0].detail
