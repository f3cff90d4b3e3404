-- v5: delivery records. One row per (document, recipient), the outbox id and the envelope
-- address; its state is decided by gateway/receipts/deliveries.py. The timeline keeps every
-- step applied to it, in order, with its evidence (kind, file relative to cases_dir,
-- sha256, detail), also the steps that changed nothing: receipts are evidence.
CREATE TABLE deliveries (
    document_id TEXT NOT NULL REFERENCES outbox(id),
    recipient   TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (document_id, recipient)
);
CREATE INDEX deliveries_state ON deliveries(state);
CREATE TABLE delivery_timeline (
    document_id TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    position    INTEGER NOT NULL,
    step        TEXT NOT NULL,
    at          TEXT NOT NULL,
    received_at TEXT,
    outcome     TEXT NOT NULL,
    before      TEXT,
    after       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    path        TEXT,
    sha256      TEXT,
    detail      TEXT,
    PRIMARY KEY (document_id, recipient, position),
    FOREIGN KEY (document_id, recipient) REFERENCES deliveries(document_id, recipient)
);
-- Receipts are matched to the outbox by ENVID (DSN, X-de-mail-private-id) and Message-ID (MDN).
CREATE INDEX IF NOT EXISTS outbox_envid ON outbox(envid);
CREATE INDEX IF NOT EXISTS outbox_message_id ON outbox(message_id);
