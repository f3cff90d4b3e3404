-- v4: the outbox. One row per queued document (the bytes live in a spool file under
-- state_dir, named by ``path``), one row per envelope recipient, because the relay may
-- accept one recipient and refuse or defer another.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    message_id       TEXT NOT NULL,
    case_ref         TEXT NOT NULL,
    case_folder      TEXT NOT NULL,
    mail_from        TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    size             INTEGER NOT NULL,
    path             TEXT NOT NULL,
    signed           TEXT NOT NULL,
    encrypted        INTEGER NOT NULL,
    key_sources      TEXT NOT NULL DEFAULT '[]',
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    envid            TEXT NOT NULL,
    last_reply       TEXT,
    resent           INTEGER NOT NULL DEFAULT 0,
    sent_path        TEXT,
    sent_manifest_sha256 TEXT,
    sent_folder      TEXT,
    claimed_by       TEXT
);
CREATE INDEX outbox_state ON outbox(state, next_attempt_at);
CREATE INDEX outbox_case ON outbox(case_ref);
CREATE INDEX outbox_message_id ON outbox(message_id);
CREATE TABLE outbox_recipients (
    outbox_id  TEXT NOT NULL REFERENCES outbox(id),
    position   INTEGER NOT NULL,
    address    TEXT NOT NULL,
    state      TEXT NOT NULL,
    reply      TEXT,
    queue_id   TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (outbox_id, position)
);
