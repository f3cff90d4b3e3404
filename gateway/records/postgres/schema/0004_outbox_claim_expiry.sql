-- v4: outbox claims across nodes. ``claim_token`` grows by one with every claim of a
-- document, so a completion names the claim it belongs to and is refused once another node
-- has taken the document over (fencing); ``claim_expires_at`` is when the claim lapses by
-- the database's clock unless its holder renews it (text, the gateway's time format, UTC).
ALTER TABLE outbox ADD COLUMN claim_token bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claim_expires_at text COLLATE "C";
