-- v1: messages, mailbox status, audit trail with checkpoints.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    mailbox         TEXT NOT NULL,
    folder          TEXT NOT NULL,
    uidvalidity     INTEGER NOT NULL,
    uid             INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    message_id      TEXT,
    size            INTEGER NOT NULL,
    internaldate    TEXT,
    fetched_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    state           TEXT NOT NULL,
    target_state    TEXT NOT NULL,
    case_ref        TEXT,
    case_folder     TEXT,
    path            TEXT,
    route           TEXT,
    reasons         TEXT NOT NULL DEFAULT '[]',
    verdict         TEXT,
    duplicate_of    TEXT,
    manifest_sha256 TEXT,
    server_done     INTEGER NOT NULL DEFAULT 0,
    subject         TEXT,
    from_addr       TEXT,
    UNIQUE (mailbox, folder, uidvalidity, uid)
);
CREATE INDEX messages_sha256 ON messages(sha256);
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_state ON messages(state);
CREATE INDEX messages_case ON messages(case_ref);
CREATE TABLE mailbox_status (
    mailbox      TEXT PRIMARY KEY,
    last_poll    TEXT,
    last_success TEXT,
    last_error   TEXT,
    last_error_at TEXT,
    backlog      INTEGER,
    uidvalidity  INTEGER
);
CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    event         TEXT NOT NULL,
    actor         TEXT NOT NULL,
    message       TEXT,
    case_ref      TEXT,
    document      TEXT,
    correspondent TEXT,
    details       TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_message ON audit(message);
CREATE INDEX audit_case ON audit(case_ref);
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    hash       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL
);
