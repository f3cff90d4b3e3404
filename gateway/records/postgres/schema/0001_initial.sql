-- v1: the whole store as SQLite's migrations 1-5 leave it, in PostgreSQL's types.
--
-- Times stay text in the gateway's own form (UTC, microseconds, 'Z'): they are compared
-- as strings, returned byte for byte, and the audit entry's time is part of what is
-- hashed. JSON stays text too: the chain hashes canonical bytes that must come back
-- unchanged, and jsonb would refuse a \u0000 in a stranger's text. Text compares and
-- sorts byte by byte ("C"), as in SQLite, whatever the database's locale.
CREATE TABLE messages (
    row_no          bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- arrival order among equal fetched_at
    id              text COLLATE "C" PRIMARY KEY,
    mailbox         text COLLATE "C" NOT NULL,
    folder          text COLLATE "C" NOT NULL,
    uidvalidity     bigint NOT NULL,
    uid             bigint NOT NULL,
    sha256          text COLLATE "C" NOT NULL,
    message_id      text COLLATE "C",
    size            bigint NOT NULL,
    internaldate    text COLLATE "C",
    fetched_at      text COLLATE "C" NOT NULL,
    updated_at      text COLLATE "C" NOT NULL,
    state           text COLLATE "C" NOT NULL,
    target_state    text COLLATE "C" NOT NULL,
    case_ref        text COLLATE "C",
    case_folder     text COLLATE "C",
    path            text COLLATE "C",
    route           text COLLATE "C",
    reasons         text COLLATE "C" NOT NULL DEFAULT '[]',
    verdict         text COLLATE "C",
    duplicate_of    text COLLATE "C",
    manifest_sha256 text COLLATE "C",
    server_done     boolean NOT NULL DEFAULT false,
    subject         text COLLATE "C",
    from_addr       text COLLATE "C",
    UNIQUE (mailbox, folder, uidvalidity, uid)
);
CREATE INDEX messages_sha256 ON messages (sha256);
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_state ON messages (state);
CREATE INDEX messages_case ON messages (case_ref);
CREATE INDEX messages_case_folder ON messages (case_folder);
CREATE INDEX messages_fetched ON messages (fetched_at, row_no);

CREATE TABLE mailbox_status (
    mailbox       text COLLATE "C" PRIMARY KEY,
    last_poll     text COLLATE "C",
    last_success  text COLLATE "C",
    last_error    text COLLATE "C",
    last_error_at text COLLATE "C",
    backlog       bigint,
    uidvalidity   bigint,
    state         text COLLATE "C",
    state_since   text COLLATE "C"
);

-- The trail. ``routed_case_folder`` repeats a ``routed`` entry's details.case_folder (it is
-- not hashed) so that selecting a case's story needs no JSON parsing of every entry.
CREATE TABLE audit (
    seq                bigint PRIMARY KEY,
    at                 text COLLATE "C" NOT NULL,
    event              text COLLATE "C" NOT NULL,
    actor              text COLLATE "C" NOT NULL,
    message            text COLLATE "C",
    case_ref           text COLLATE "C",
    document           text COLLATE "C",
    correspondent      text COLLATE "C",
    details            text COLLATE "C" NOT NULL,
    prev_hash          text COLLATE "C" NOT NULL,
    hash               text COLLATE "C" NOT NULL,
    routed_case_folder text COLLATE "C"
);
CREATE INDEX audit_message ON audit (message);
CREATE INDEX audit_case ON audit (case_ref);
CREATE INDEX audit_document ON audit (document);
CREATE INDEX audit_routed ON audit (routed_case_folder) WHERE routed_case_folder IS NOT NULL;

CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY,
    at        text COLLATE "C" NOT NULL,
    hash      text COLLATE "C" NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    signature text COLLATE "C" NOT NULL
);

-- The chain's head: every append reads it FOR UPDATE inside its transaction, so writers
-- on any connection or node attach to one explicit head, one after the other.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text COLLATE "C" NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE outbox (
    id                   text COLLATE "C" PRIMARY KEY,
    message_id           text COLLATE "C" NOT NULL,
    case_ref             text COLLATE "C" NOT NULL,
    case_folder          text COLLATE "C" NOT NULL,
    mail_from            text COLLATE "C" NOT NULL,
    sha256               text COLLATE "C" NOT NULL,
    size                 bigint NOT NULL,
    path                 text COLLATE "C" NOT NULL,
    signed               text COLLATE "C" NOT NULL,
    encrypted            boolean NOT NULL,
    key_sources          text COLLATE "C" NOT NULL DEFAULT '[]',
    state                text COLLATE "C" NOT NULL,
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      text COLLATE "C",
    created_at           text COLLATE "C" NOT NULL,
    updated_at           text COLLATE "C" NOT NULL,
    envid                text COLLATE "C" NOT NULL,
    last_reply           text COLLATE "C",
    resent               boolean NOT NULL DEFAULT false,
    sent_path            text COLLATE "C",
    sent_manifest_sha256 text COLLATE "C",
    sent_folder          text COLLATE "C",
    claimed_by           text COLLATE "C"
);
CREATE INDEX outbox_state ON outbox (state, next_attempt_at);
CREATE INDEX outbox_case ON outbox (case_ref);
CREATE INDEX outbox_message_id ON outbox (message_id);
CREATE INDEX outbox_envid ON outbox (envid);

CREATE TABLE outbox_recipients (
    outbox_id  text COLLATE "C" NOT NULL REFERENCES outbox (id),
    position   integer NOT NULL,
    address    text COLLATE "C" NOT NULL,
    state      text COLLATE "C" NOT NULL,
    reply      text COLLATE "C",
    queue_id   text COLLATE "C",
    updated_at text COLLATE "C" NOT NULL,
    PRIMARY KEY (outbox_id, position)
);

CREATE TABLE deliveries (
    document_id text COLLATE "C" NOT NULL REFERENCES outbox (id),
    recipient   text COLLATE "C" NOT NULL,
    state       text COLLATE "C" NOT NULL,
    created_at  text COLLATE "C" NOT NULL,
    updated_at  text COLLATE "C" NOT NULL,
    PRIMARY KEY (document_id, recipient)
);
CREATE INDEX deliveries_state ON deliveries (state);

CREATE TABLE delivery_timeline (
    document_id text COLLATE "C" NOT NULL,
    recipient   text COLLATE "C" NOT NULL,
    position    integer NOT NULL,
    step        text COLLATE "C" NOT NULL,
    at          text COLLATE "C" NOT NULL,
    received_at text COLLATE "C",
    outcome     text COLLATE "C" NOT NULL,
    before      text COLLATE "C",
    after       text COLLATE "C" NOT NULL,
    kind        text COLLATE "C" NOT NULL,
    path        text COLLATE "C",
    sha256      text COLLATE "C",
    detail      text COLLATE "C",
    PRIMARY KEY (document_id, recipient, position),
    FOREIGN KEY (document_id, recipient) REFERENCES deliveries (document_id, recipient)
);
