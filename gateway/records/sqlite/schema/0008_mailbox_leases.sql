-- v8: mailbox leases. One row per mailbox a node has ever worked: the node holding it, an
-- epoch that grows by one at every acquisition (the fence every commit for the mailbox is
-- checked against) and the expiry (UTC text, '%Y-%m-%dT%H:%M:%fZ', compared as text).
-- On SQLite the one daemon (the state directory's lock) is the only node; the table
-- keeps the store contract the same as on PostgreSQL.
CREATE TABLE mailbox_leases (
    mailbox     TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       INTEGER NOT NULL CHECK (epoch > 0),
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    released_at TEXT  -- set when the holder gave it up at a clean stop
);
