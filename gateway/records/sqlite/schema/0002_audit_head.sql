-- v2: the chain's head in a row of its own. Every append reads and moves it inside its
-- write transaction, so writers attach to one explicit head (PostgreSQL: the same row,
-- read FOR UPDATE) instead of whatever entry sorts last. Databases that already hold
-- entries start with their last one.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
SELECT 1,
       COALESCE((SELECT seq FROM audit ORDER BY seq DESC LIMIT 1), 0),
       COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1),
                '0000000000000000000000000000000000000000000000000000000000000000');
