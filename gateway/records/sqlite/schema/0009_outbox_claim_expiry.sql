-- v9: outbox claims that other nodes can judge. ``claim_token`` grows by one with every
-- claim of a document, so a completion names the claim it belongs to and is refused once
-- another process has taken the document over; ``claim_expires_at`` is when the claim
-- lapses unless its holder renews it (the gateway's time format, UTC).
ALTER TABLE outbox ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claim_expires_at TEXT;
