-- v2: what SQLite's migrations 6 and 7 add, in PostgreSQL's types.
--
-- Bcc and refused certificates. ``bcc``: the letter's Bcc recipients (a JSON list; on a
-- Bcc copy its one recipient), in no header of any copy, recorded so the authority knows who
-- got it. ``bcc_copy_of``: on a separate message for a Bcc recipient, the outbox id of the
-- letter it is a copy of. ``key_refusals``: "certificate of X refused: expired (source)" for
-- recipients that were left without a usable certificate (a JSON list).
ALTER TABLE outbox ADD COLUMN bcc text COLLATE "C" NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN bcc_copy_of text COLLATE "C";
ALTER TABLE outbox ADD COLUMN key_refusals text COLLATE "C" NOT NULL DEFAULT '[]';

-- Find an entry by its hash: `audit verify --since HEAD_HASH` starts from the head an
-- auditor kept; without this index finding it reads the whole trail.
CREATE INDEX audit_hash ON audit (hash);
