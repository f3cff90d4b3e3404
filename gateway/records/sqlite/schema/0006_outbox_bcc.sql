-- v6: Bcc and refused certificates. ``bcc``: the letter's Bcc recipients (a JSON list; on a
-- Bcc copy its one recipient), in no header of any copy, recorded so the authority knows who
-- got it. ``bcc_copy_of``: on a separate message for a Bcc recipient, the outbox id of the
-- letter it is a copy of. ``key_refusals``: "certificate of X refused: expired (source)" for
-- recipients that were left without a usable certificate (a JSON list).
ALTER TABLE outbox ADD COLUMN bcc TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN bcc_copy_of TEXT;
ALTER TABLE outbox ADD COLUMN key_refusals TEXT NOT NULL DEFAULT '[]';
