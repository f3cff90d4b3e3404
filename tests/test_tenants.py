"""``[[tenant]]``: several authorities in one configuration, each kept apart by construction.

Each tenant is a complete configuration of its own (its mailboxes, keys, trust anchors,
routes, case folders, ledger and audit chain); the tests try to make one tenant's data
reach another's: the same Aktenzeichen in both, a letter signed for one arriving in the
other's mailbox, a person naming another tenant's id. Real Dovecot, real certificates,
SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, ROUTES, mailbox_entry
from support.audit import MALFORMED
from support.outbox import document
from support.smime_pki import SENDER, TestPKI, headers, mime_text, multipart_signed, sign_detached_der

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.errors import ConfigError
from gateway.records.chain import AuditEntry
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store, store_name
from gateway.statedir import ledger_path

SAME_CASE = "Bauantrag Az.: 63-BV-2026-0147"


# -- writing a configuration with tenants ---------------------------------------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))


def _table(header: str, values: dict[str, Any]) -> str:
    return "\n".join([header, *(f"{k} = {_value(v)}" for k, v in values.items())]) + "\n"


def tenant_block(
    name: str,
    *,
    mailboxes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    cases_dir: Path | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    routes: str = ROUTES,
) -> str:
    """One ``[[tenant]]`` block: its own mailboxes, routes and sections (``smime``, ``smtp`` …)."""
    out = [_table("[[tenant]]", {"name": name})]
    if cases_dir is not None:
        out.append(_table("[tenant.storage]", {"cases_dir": cases_dir}))
    for mb in mailboxes:
        out.append(_table("[[tenant.mailbox]]", mb))
    for section, values in (sections or {}).items():
        out.append(_table(f"[tenant.{section}]", values))
    out.append(routes.replace("[[route]]", "[[tenant.route]]"))
    return "\n".join(out)


def write(root: Path, *blocks: str, storage: str = "", top: str = "") -> Path:
    text = f'[storage]\nstate_dir = "{root}/state"\n{storage}\n[logging]\nformat = "json"\n{top}\n' + "\n".join(blocks)
    path = root / "poststelle.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config)}
    return subprocess.run(
        [*POSTSTELLE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
    )


def ok(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(config, *args)
    assert proc.returncode == 0, f"poststelle {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def records(cfg: Config) -> list[MessageRecord]:
    store = open_store(cfg, readonly=True)
    try:
        return list(store.all_messages())
    finally:
        store.close()


def trail(cfg: Config) -> list[AuditEntry]:
    store = open_store(cfg, readonly=True)
    try:
        return list(store.entries())
    finally:
        store.close()


def refused(root: Path, *blocks: str, **kw: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(write(root, *blocks, **kw))
    return err.value


def mailbox(name: str, user: str, *, host: str = "imap.example.org") -> dict[str, Any]:
    return {"name": name, "host": host, "username": user, "password": "x"}


# -- the configuration ---------------------------------------------------------------------------
def test_a_file_without_tenants_is_one_configuration_as_before(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "", top=_table("[[mailbox]]", mailbox("rathaus", "rathaus"))))
    assert cfg.tenants == () and cfg.tenant is None and [m.name for m in cfg.mailboxes] == ["rathaus"]
    assert cfg.storage.state_dir == tmp_path / "state" and cfg.storage.schema is None


def test_each_tenant_is_a_complete_configuration_with_its_own_state_and_inherits_only_shared_sections(
    tmp_path: Path,
) -> None:
    relay = _table("[smtp]", {"host": "relay.example.org", "port": 587, "security": "starttls"})
    limits = _table("[limits]", {"max_mime_depth": 7})
    a = tenant_block("stadt_a", mailboxes=[mailbox("in", "a")], sections={"smtp": {"from": "post@a.example"}})
    b = tenant_block(
        "stadt_b",
        mailboxes=[mailbox("in", "b")],
        cases_dir=tmp_path / "b-cases",
        sections={"limits": {"max_mime_depth": 3}},
    )
    cfg = load_config(write(tmp_path, a, b, top=relay + limits))
    assert cfg.mailboxes == () and [t.tenant for t in cfg.tenants] == ["stadt_a", "stadt_b"]
    ta, tb = cfg.tenants
    assert ta.storage.state_dir == tmp_path / "state" / "tenants" / "stadt_a"
    assert ta.storage.cases_dir == ta.storage.state_dir / "cases"
    assert tb.storage.cases_dir == tmp_path / "b-cases"
    assert (ta.limits.max_mime_depth, tb.limits.max_mime_depth) == (7, 3), "inherited unless the tenant has its own"
    assert ta.smtp is not None and (ta.smtp.host, ta.smtp.mail_from) == ("relay.example.org", "post@a.example")
    assert tb.smtp is None, "a tenant without [smtp] sends nothing, whatever the relay defaults say"
    assert ta.processing == tb.processing == cfg.processing, "one analysis pool for the process (inbound.pool)"
    two = load_config(write(tmp_path, a, b, top=relay + "[processing]\nanalysis_workers = 2\n"))
    assert [t.processing.analysis_workers for t in two.tenants] == [2, 2]
    assert ledger_path(ta) != ledger_path(tb) and ta.metrics is None
    assert cfg.tenant_config("stadt_b") is tb


@pytest.mark.parametrize(
    ("top", "problem_key", "words"),
    [
        (_table("[[mailbox]]", mailbox("x", "x")), "mailbox", "inside each tenant"),
        ("[smime]\ntrust_anchors = []\n", "smime", "inside each tenant"),
        ("[audit]\ncheckpoint_every = 5\n", "audit", "inside each tenant"),
        ('[smtp]\nhost = "relay.example.org"\nfrom = "x@example.org"\n', "smtp.from", "its own address"),
        ('[smtp]\nhost = "relay.example.org"\nprot = 25\n', "smtp.prot", "unknown key"),
    ],
)
def test_what_decides_trust_or_placement_is_never_shared_from_the_top_level(
    tmp_path: Path, top: str, problem_key: str, words: str
) -> None:
    err = refused(tmp_path, tenant_block("a", mailboxes=[mailbox("in", "a")]), top=top)
    assert err.key == problem_key and words in err.problem


def test_two_tenants_with_one_name_are_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, tenant_block("a"), tenant_block("a", cases_dir=tmp_path / "other"))
    assert err.key == "tenant[1].name" and "duplicate" in err.problem


@pytest.mark.parametrize("second", ["same", "inside"])
def test_two_tenants_sharing_a_cases_dir_are_refused(tmp_path: Path, second: str) -> None:
    shared = tmp_path / "cases"
    theirs = shared if second == "same" else shared / "b"
    err = refused(tmp_path, tenant_block("a", cases_dir=shared), tenant_block("b", cases_dir=theirs))
    assert err.key == "tenant[1].storage.cases_dir" and "'a'" in err.problem


def test_a_cases_dir_inside_another_tenants_state_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, tenant_block("a"), tenant_block("b", cases_dir=tmp_path / "state" / "tenants" / "a" / "x"))
    assert err.key == "tenant[1].storage.cases_dir"


def test_two_tenants_reading_one_mailbox_are_refused(tmp_path: Path) -> None:
    a = tenant_block("a", mailboxes=[mailbox("in", "post", host="IMAP.example.org")])
    b = tenant_block("b", mailboxes=[mailbox("other", "x"), mailbox("in", "post")])
    err = refused(tmp_path, a, b)
    assert err.key == "tenant[1].mailbox[1].username" and "tenant 'a'" in err.problem


def test_two_tenants_signing_their_trails_with_one_key_are_refused(tmp_path: Path) -> None:
    shared = {"audit": {"key_file": str(tmp_path / "audit.key")}}
    err = refused(
        tmp_path, tenant_block("a", sections=shared), tenant_block("b", cases_dir=tmp_path / "b", sections=shared)
    )
    assert err.key == "tenant[1].audit.key_file" and "tenant 'a'" in err.problem


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ('[[tenant]]\nname = "Stadt A"\n', "tenant[0].name"),
        ("[[tenant]]\n", "tenant[0].name"),
        ('[[tenant]]\nname = "a"\n[tenant.storage]\nstate_dir = "/elsewhere"\n', "tenant[0].storage.state_dir"),
        ('[[tenant]]\nname = "a"\n[tenant.logging]\nlevel = "debug"\n', "tenant[0].logging"),
        (
            '[[tenant]]\nname = "a"\n[[tenant.mailbox]]\nname = "in"\nusername = "u"\npassword = "x"\n',
            "tenant[0].mailbox[0].host",
        ),
        ('[[tenant]]\nname = "a"\nsurprise = 1\n', "tenant[0].surprise"),
    ],
)
def test_a_bad_tenant_block_names_the_tenant_and_the_key(tmp_path: Path, block: str, key: str) -> None:
    err = refused(tmp_path, block)
    assert err.key == key and err.file == str(tmp_path / "poststelle.toml")


def test_the_cli_needs_a_tenant_named_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_block("a"), tenant_block("b", cases_dir=tmp_path / "b-cases"))
    ok(path, "init")
    missing = cli(path, "quarantine", "list")
    assert missing.returncode == 2 and "name one with --tenant" in missing.stderr and "(a, b)" in missing.stderr
    unknown = cli(path, "quarantine", "list", "--tenant", "zz")
    assert unknown.returncode == 2 and "unknown tenant 'zz'" in unknown.stderr
    assert ok(path, "quarantine", "list", "--tenant", "b", "--json").stdout.strip() == "[]"
    (tmp_path / "plain").mkdir()
    plain = write(tmp_path / "plain", "")
    assert "no [[tenant]] blocks" in cli(plain, "status", "--tenant", "a").stderr


# -- the outbox ------------------------------------------------------------------------------------
def test_outbox_decisions_naming_another_tenants_document_find_nothing(tmp_path: Path) -> None:
    relay = _table("[smtp]", {"host": "127.0.0.1", "port": 2525, "security": "plain"})
    blocks = [
        tenant_block(
            n,
            sections={"smtp": {"from": f"post@{n}.example"}, "outbound": {"sign": "none"}},
            cases_dir=tmp_path / f"{n}-cases",
        )
        for n in ("a", "b")
    ]
    path = write(tmp_path, *blocks, top=relay)
    ok(path, "init")
    cfg = load_config(path)
    tb = cfg.tenant_config("b")
    from gateway.outbound import outbox

    store = open_store(tb)
    try:
        doc_id = outbox.enqueue(tb, store, document(mail_from="post@b.example"))
    finally:
        store.close()
    wrong = cli(path, "outbox", "hold", doc_id, "--tenant", "a")
    assert wrong.returncode == 1 and f"no outbox document with id '{doc_id}'" in wrong.stderr
    assert json.loads(ok(path, "outbox", "list", "--tenant", "a", "--json").stdout) == []
    ok(path, "outbox", "hold", doc_id, "--tenant", "b")
    (row,) = json.loads(ok(path, "outbox", "list", "--tenant", "b", "--json").stdout)
    assert row["id"] == doc_id and row["state"] == "hold"


# -- end to end against Dovecot ------------------------------------------------------------------
def signed_letter(pki: TestPKI, subject: str) -> bytes:
    inner = mime_text(body="Sehr geehrte Damen und Herren,\r\nanbei der unterschriebene Antrag.\r\n")
    return multipart_signed(headers(SENDER, subject=subject), inner, sign_detached_der(pki["sender"], inner))


def two_tenants(
    root: Path, dovecot: Dovecot, new_user: Callable[[], str], pki: TestPKI, *, storage: str = ""
) -> tuple[Path, str, str]:
    """Tenant a trusts the test PKI's root; tenant b trusts only an unrelated root; one shared analysis worker."""
    files = pki.write(root / "pki")
    rogue = root / "pki" / "rogue-root.pem"
    rogue.write_bytes(pki.rogue_root.cert_pem())
    ua, ub = new_user(), new_user()
    a = tenant_block(
        "a",
        mailboxes=[mailbox_entry(dovecot, ua, root, name="post_a")],
        cases_dir=root / "cases-a",
        sections={"smime": {"trust_anchors": [str(files["root"])]}},
    )
    b = tenant_block(
        "b",
        mailboxes=[mailbox_entry(dovecot, ub, root, name="post_b")],
        cases_dir=root / "cases-b",
        sections={"smime": {"trust_anchors": [str(rogue)]}},
    )
    path = write(root, a, b, storage=storage, top="[processing]\nanalysis_workers = 1\n")
    ok(path, "init")
    return path, ua, ub


def case_entries(cases: Path, folder: str) -> list[dict[str, Any]]:
    return [json.loads((e / "manifest.json").read_text()) for e in sorted((cases / folder).glob("*")) if e.is_dir()]


def by_subject(recs: list[MessageRecord], subject: str) -> MessageRecord:
    (rec,) = [r for r in recs if r.subject == subject]
    return rec


def test_two_tenants_on_sqlite_keep_their_mail_their_trust_and_their_chains_apart(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI
) -> None:
    path, ua, ub = two_tenants(tmp_path, dovecot, new_user, pki)
    dovecot.append(
        ua,
        "INBOX",
        [
            letter(subject=SAME_CASE, message_id="<a-1@nachbar.example>"),
            signed_letter(pki, "Antrag Az. 63-BV-2026-0200"),
        ],
    )
    dovecot.append(
        ub,
        "INBOX",
        [
            letter(subject=SAME_CASE, message_id="<b-1@nachbar.example>"),
            signed_letter(pki, "Antrag Az. 63-BV-2026-0200"),
            MALFORMED,
        ],
    )

    ok(path, "run", "--once")  # no --tenant: every tenant's mailboxes, in one process

    cfg = load_config(path)
    ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
    assert [m["message_id"] for m in case_entries(tmp_path / "cases-a", "63-BV-2026-0147")] == ["<a-1@nachbar.example>"]
    assert [m["message_id"] for m in case_entries(tmp_path / "cases-b", "63-BV-2026-0147")] == ["<b-1@nachbar.example>"]
    ra, rb = records(ta), records(tb)
    assert {r.mailbox for r in ra} == {"post_a"} and {r.mailbox for r in rb} == {"post_b"}
    assert len(ra) == 2 and len(rb) == 3

    # The same signed letter: verified under a's anchors, not proven under b's.
    signed_a = by_subject(ra, "Antrag Az. 63-BV-2026-0200")
    signed_b = by_subject(rb, "Antrag Az. 63-BV-2026-0200")
    assert signed_a.verdict is not None and signed_a.verdict["verdict"] == "verified"
    assert signed_b.verdict is not None and signed_b.verdict["verdict"] != "verified"
    assert signed_b.verdict["signature"]["status"] == "untrusted"
    assert not list((ta.storage.state_dir / "quarantine").glob("*"))

    # A person naming b's quarantined message while working on a finds nothing.
    (quarantined,) = [r for r in rb if r.state == "quarantined"]
    wrong = cli(path, "quarantine", "release", quarantined.id, "--case", "63-BV-2026-0147", "--tenant", "a")
    assert wrong.returncode == 1 and f"no message with id '{quarantined.id}'" in wrong.stderr
    assert len(case_entries(tmp_path / "cases-a", "63-BV-2026-0147")) == 1
    assert quarantined.id in ok(path, "quarantine", "list", "--tenant", "b").stdout

    # Each chain verifies on its own, and names only its own tenant's mailbox.
    for name, own in (("a", "post_a"), ("b", "post_b")):
        report = json.loads(ok(path, "audit", "verify", "--json", "--tenant", name).stdout)
        assert report["breaks"] == []
        tenant = cfg.tenant_config(name)
        store = open_store(tenant, readonly=True)
        try:
            trail = list(store.entries())
        finally:
            store.close()
        (loaded,) = [e for e in trail if e.event == "config-loaded"]
        assert loaded.details["tenant"] == name
        assert {e.details["mailbox"] for e in trail if "mailbox" in e.details} == {own}

    status = json.loads(ok(path, "status", "--json").stdout)["tenants"]
    assert status["a"]["messages"] == {"stored": 2} and status["b"]["messages"] == {"stored": 2, "quarantined": 1}
    assert [m["mailbox"] for m in status["b"]["mailboxes"]] == ["post_b"]

    checks = json.loads(ok(path, "check", "--json").stdout)
    assert {(c["tenant"], c["target"]) for c in checks if c["check"] == "mailbox"} == {("a", "post_a"), ("b", "post_b")}

    # One tenant alone: `run --once --tenant b` reads b's mailbox and leaves a's waiting.
    dovecot.append(ua, "INBOX", [letter(subject=SAME_CASE, message_id="<a-2@nachbar.example>")])
    dovecot.append(ub, "INBOX", [letter(subject=SAME_CASE, message_id="<b-2@nachbar.example>")])
    ok(path, "run", "--once", "--tenant", "b")
    assert len(case_entries(tmp_path / "cases-b", "63-BV-2026-0147")) == 2
    assert len(case_entries(tmp_path / "cases-a", "63-BV-2026-0147")) == 1 and dovecot.folder_uids(ua, "INBOX")

    from gateway.service.metrics import collect_all, render
    from gateway.service.snapshot import StatusBoard

    text = render(
        collect_all([(t.tenant, t, StatusBoard(None, pid=1, config_sha256="", version="x")) for t in cfg.tenants])
    )
    assert 'poststelle_messages{tenant="a",state="stored"} 2' in text
    assert 'poststelle_messages{tenant="b",state="stored"} 3' in text
    assert text.count("poststelle_build_info{") == 1


def test_two_tenants_in_one_postgresql_database_each_have_their_own_schema_and_chain(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI, pg_template: tuple[Any, str]
) -> None:
    from support.stores import PostgresBackend

    server, template = pg_template
    pg = PostgresBackend(server, template)
    try:
        dsn_file = tmp_path / "dsn"
        dsn_file.write_text(pg.dsn + "\n")
        dsn_file.chmod(0o600)
        storage = f'backend = "postgresql"\ndsn_file = "{dsn_file}"\n'
        path, ua, ub = two_tenants(tmp_path, dovecot, new_user, pki, storage=storage)
        dovecot.append(ua, "INBOX", [letter(subject=SAME_CASE, message_id="<pa-1@nachbar.example>")])
        dovecot.append(ub, "INBOX", [letter(subject=SAME_CASE, message_id="<pb-1@nachbar.example>"), MALFORMED])

        ok(path, "run", "--once")

        cfg = load_config(path)
        ta, tb = cfg.tenant_config("a"), cfg.tenant_config("b")
        assert (ta.storage.schema, tb.storage.schema) == ("tenant_a", "tenant_b")
        assert store_name(ta).endswith("(schema tenant_a)") and server.password not in store_name(ta)
        assert not ledger_path(ta).exists() and not ledger_path(tb).exists(), "no SQLite ledger beside the database"
        assert [r.message_id for r in records(ta)] == ["<pa-1@nachbar.example>"]
        assert sorted(r.state for r in records(tb)) == ["quarantined", "stored"]
        assert [m["message_id"] for m in case_entries(tmp_path / "cases-b", "63-BV-2026-0147")] == [
            "<pb-1@nachbar.example>"
        ]
        heads = []
        for name in ("a", "b"):
            report = json.loads(ok(path, "audit", "verify", "--json", "--tenant", name).stdout)
            assert report["breaks"] == []
            store = open_store(cfg.tenant_config(name), readonly=True)
            try:
                head = store.head()
            finally:
                store.close()
            assert head is not None
            heads.append(head.hash)
        assert heads[0] != heads[1], "two chains, not one"
        (quarantined,) = [r for r in records(tb) if r.state == "quarantined"]
        wrong = cli(path, "quarantine", "show", quarantined.id, "--tenant", "a")
        assert wrong.returncode == 1 and f"no message with id '{quarantined.id}'" in wrong.stderr
    finally:
        pg.close_all()


def test_the_daemon_runs_every_tenant_reloads_each_on_sighup_and_serves_metrics_with_a_tenant_label(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI
) -> None:
    import signal
    import socket
    import time
    import urllib.request

    from gateway.service.snapshot import read_status
    from gateway.statedir import daemon_status_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    path, ua, ub = two_tenants(tmp_path, dovecot, new_user, pki)
    path.write_text(path.read_text().replace("[logging]", f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n[logging]', 1))
    cfg = load_config(path)
    dovecot.append(ua, "INBOX", [letter(subject=SAME_CASE, message_id="<d-a@nachbar.example>")])
    dovecot.append(ub, "INBOX", [letter(subject=SAME_CASE, message_id="<d-b@nachbar.example>")])

    def filed() -> bool:
        return all(len(case_entries(tmp_path / f"cases-{n}", "63-BV-2026-0147")) == 1 for n in ("a", "b"))

    log = tmp_path / "daemon.log"
    env = {**os.environ, "POSTSTELLE_CONFIG": str(path)}
    with log.open("w") as err:
        proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120  # bounds a failure only
        while not filed() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert filed(), log.read_text()[-3000:]
        for t in cfg.tenants:  # each tenant's daemon keeps its own status file, with this pid
            assert (read_status(daemon_status_path(t)) or {}).get("pid") == proc.pid
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            text = reply.read().decode("utf-8")
        assert 'poststelle_messages{tenant="a",state="stored"} 1' in text
        assert 'poststelle_messages{tenant="b",state="stored"} 1' in text
        running = json.loads(ok(path, "status", "--json").stdout)["tenants"]
        assert running["a"]["daemon"]["running"] and running["b"]["daemon"]["pid"] == proc.pid

        # SIGHUP: each tenant re-reads its part; a tenant added to the file waits for a restart.
        path.write_text(path.read_text() + "\n" + tenant_block("c", cases_dir=tmp_path / "cases-c"))
        proc.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            return all(any(e.event == "config-reloaded" for e in trail(t)) for t in cfg.tenants)

        while not (reloaded() and "starts with the next restart" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert reloaded() and '"tenant": "c"' in log.read_text(), log.read_text()[-3000:]
        assert not (tmp_path / "state" / "tenants" / "c").exists()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 0, log.read_text()[-3000:]
    for t in cfg.tenants:
        stopped = [e.details for e in trail(t) if e.event == "daemon-stopped"]
        assert [(d["reason"], d["signal"]) for d in stopped] == [("signal", "SIGTERM")]


def test_the_example_configs_tenant_block_loads_as_written(tmp_path: Path) -> None:
    """The commented ``[[tenant]]`` in config/poststelle.example.toml, uncommented, is a valid tenant."""
    text = (REPO / "config" / "poststelle.example.toml").read_text(encoding="utf-8")
    lines = text[text.index("\n# [[tenant]]\n") :].splitlines()
    block = "\n".join(line[2:] for line in lines if line.startswith("# "))
    secret = tmp_path / "imap.secret"
    secret.write_text("x")
    secret.chmod(0o600)
    block = block.replace("/etc/poststelle/hofheim/imap.secret", str(secret))
    block = block.replace("/srv/poststelle/hofheim", str(tmp_path / "hofheim"))
    (tenant,) = load_config(write(tmp_path, block)).tenants
    assert tenant.tenant == "hofheim" and [r.name for r in tenant.routes] == ["Aktenzeichen"]
    assert tenant.storage.cases_dir == tmp_path / "hofheim"


def test_a_tenant_whose_state_is_locked_stops_the_start_and_leaves_no_other_tenant_locked(tmp_path: Path) -> None:
    import fcntl
    import sys

    from gateway.service.statelock import AlreadyRunning
    from gateway.service.tenants import TenantsDaemon
    from gateway.statedir import init_storage, lock_path

    a = tenant_block("a", mailboxes=[mailbox("in", "a", host="127.0.0.1")])
    b = tenant_block("b", mailboxes=[mailbox("in", "b", host="127.0.0.1")], cases_dir=tmp_path / "b-cases")
    cfg = load_config(write(tmp_path, a, b))
    for t in cfg.tenants:
        init_storage(t)
    ta, tb = cfg.tenants
    hold = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'%d\\n' % os.getpid())\nprint('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock_path(tb))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning) as err:
            TenantsDaemon(cfg, once=True)
        assert str(tb.storage.state_dir) in str(err.value)
        fd = os.open(lock_path(ta), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # tenant a's lock was let go again
        finally:
            os.close(fd)
    finally:
        holder.communicate("", timeout=30)


def test_systemd_hears_one_process_ready_once_every_tenant_serves_and_fed_while_all_live(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI
) -> None:
    import signal
    import socket

    from gateway.service.snapshot import read_status
    from gateway.statedir import daemon_status_path

    path, _ua, _ub = two_tenants(tmp_path, dovecot, new_user, pki)
    cfg = load_config(path)
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(60)  # bounds a datagram that never comes

    def receive() -> dict[str, str]:
        data = manager.recv(4096).decode("utf-8")
        return dict(line.split("=", 1) for line in data.split("\n"))

    env = {**os.environ, "POSTSTELLE_CONFIG": str(path), "NOTIFY_SOCKET": str(tmp_path / "notify")}
    env["WATCHDOG_USEC"] = "2000000"
    env.pop("WATCHDOG_PID", None)
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        first = receive()
        while "READY" not in first:
            assert "WATCHDOG" in first or "STATUS" in first, first
            first = receive()
        assert first["STATUS"] == "2 tenants"
        for t in cfg.tenants:  # both tenants had started their workers before READY was said
            assert (read_status(daemon_status_path(t)) or {}).get("pid") == proc.pid
        seen = [receive() for _ in range(3)]
        assert any(m.get("WATCHDOG") == "1" for m in seen), seen
        assert not any("READY" in m for m in seen), "one READY for the process, not one per tenant"
        proc.send_signal(signal.SIGTERM)
        message = receive()
        while "STOPPING" not in message:
            message = receive()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        manager.close()
    assert proc.returncode == 0, log.read_text()[-3000:]
