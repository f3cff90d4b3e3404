-- v3: mailbox leases. One row per mailbox a node has ever worked: the node holding it, an
-- epoch that grows by one at every acquisition (the fence every commit for the mailbox is
-- checked against), the expiry in the database's clock, and when the holder released it. A released or expired row
-- stays: the next holder continues its epoch, so an old holder's epoch is never reused.
CREATE TABLE mailbox_leases (
    mailbox     text COLLATE "C" PRIMARY KEY,
    holder      text COLLATE "C" NOT NULL,
    epoch       bigint NOT NULL CHECK (epoch > 0),
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    released_at timestamptz  -- set when the holder gave it up at a clean stop
);
