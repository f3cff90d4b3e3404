-- v5: a mailbox's condition and since when: 'ok', 'error' (retried with backoff) or
-- 'auth-failed' (the server rejected the login; retried only after a restart or a long
-- interval). A row written with state 'ok' clears last_error and last_error_at; the
-- history stays in the audit trail (mailbox-failing, mailbox-recovered).
ALTER TABLE mailbox_status ADD COLUMN state TEXT;
ALTER TABLE mailbox_status ADD COLUMN state_since TEXT;
