"""A discarded staged entry can never be published afterwards, whoever staged it.

On a shared store the node that takes a mailbox over finishes or abandons what the previous
holder left in ``processing``; the previous holder may have been paused with the entry
staged and wake at any moment. ``discard_staging`` renames the entry away in one step
before removing it, so the late publish either happened first (the entry is in its case
folder and recovery finds it) or finds nothing and fails, with nothing filed twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Env

from gateway.filing.areas import Area
from gateway.filing.entries import (
    WITHDRAWN,
    EntryFile,
    StagedEntry,
    discard_staging,
    final_path,
    publish_entries,
    published_manifest,
    seal_staging,
    stage_files,
    sweep_staging,
)
from gateway.inbound.intake import Intake
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store
from gateway.unwrap import UnwrapContext

CASE = "63-BV-2026-0147"
NAME = "20260101T000000Z_00000000000a"


@pytest.fixture
def area(tmp_path: Path) -> Area:
    (tmp_path / "cases").mkdir()
    return Area.at("cases", tmp_path / "cases", staging_in=tmp_path / "staging")


def staged(area: Area) -> StagedEntry:
    files = stage_files(area, CASE, NAME, [EntryFile("original.eml", b"From: a@b\r\n\r\nx\r\n")], bucket="mb")
    return seal_staging(area, files, {"id": NAME[-12:]})


def test_a_late_publish_after_the_entry_was_discarded_fails_and_files_nothing(area: Area, tmp_path: Path) -> None:
    try:
        entry = staged(area)  # the paused node's entry, its intent in the ledger
        discard_staging(area, NAME, "mb")  # the new holder abandons it
        with pytest.raises(FileNotFoundError):
            publish_entries({area.name: area}, [entry])  # the paused node wakes and publishes
        assert published_manifest(area, CASE, NAME) is None
    finally:
        area.close()
    assert not (tmp_path / "cases" / CASE / NAME).exists()
    assert list((tmp_path / "staging").rglob("*.eml")) == []


def test_an_entry_published_before_the_discard_stays_published(area: Area, tmp_path: Path) -> None:
    try:
        entry = staged(area)
        publish_entries({area.name: area}, [entry])  # published before the new holder looked
        discard_staging(area, NAME, "mb")  # nothing left in staging: nothing removed
        assert published_manifest(area, CASE, NAME) is not None
    finally:
        area.close()
    assert (tmp_path / "cases" / CASE / NAME / "original.eml").is_file()


def test_an_entry_left_half_withdrawn_by_a_crash_is_swept_and_a_new_discard_finishes_it(area: Area) -> None:
    try:
        staged(area)
        bucket = area.staging / "mb"
        (bucket / NAME).rename(bucket / (NAME + WITHDRAWN))  # crashed between the rename and the removal
        assert sweep_staging(area, "mb").removed == [NAME + WITHDRAWN]
        staged(area)
        (bucket / NAME).rename(bucket / (NAME + WITHDRAWN))
        staged(area)  # the same name staged again meanwhile
        discard_staging(area, NAME, "mb")
        assert sorted(p.name for p in bucket.iterdir()) == []
    finally:
        area.close()


def test_recovery_withdraws_a_staged_entry_before_it_looks_so_a_waking_node_cannot_publish_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The residual window of a take-over: the old holder wakes just after "not published" was found."""
    from gateway.inbound import intake as intake_module

    config = env.config
    (mb,) = config.mailboxes
    store = open_store(config)
    intake = Intake(config, mb, store, UnwrapContext.from_config(config))
    try:
        area = intake.areas["cases"]
        files = stage_files(area, CASE, NAME, [EntryFile("original.eml", b"From: a@b\r\n\r\nx\r\n")], bucket=mb.name)
        entry = seal_staging(area, files, {"id": NAME[-12:]})  # the paused node's entry
        final = final_path(area.root, CASE, NAME)
        rec = MessageRecord(
            id=NAME[-12:], mailbox=mb.name, folder="INBOX", uidvalidity=1, uid=1, sha256="0" * 64,
            message_id=None, size=10, internaldate=None, state="processing", target_state="stored",
            case_folder=CASE, path=str(final),
        )  # fmt: skip
        store.plan([rec], [])
        late: list[str] = []
        looked = intake_module.published_manifest

        def wakes_after_the_look(a: Area, folder: str | None, name: str) -> bytes | None:
            found = looked(a, folder, name)
            try:  # the old holder publishes right after the new one found nothing published
                publish_entries({a.name: a}, [entry])
                late.append("published")
            except FileNotFoundError:
                late.append("refused")
            return found

        monkeypatch.setattr(intake_module, "published_manifest", wakes_after_the_look)
        assert intake.recover() == 1
        assert late == ["refused"]
        assert not final.exists(), "nothing of the old holder's is filed"
        assert store.get(rec.id) is None, "the intent is abandoned; the message is fetched again"
    finally:
        intake.close()
        store.close()
