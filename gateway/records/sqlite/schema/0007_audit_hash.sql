-- v7: find an entry by its hash. `audit verify --since HEAD_HASH` starts from the head an
-- auditor kept; without this index finding it reads the whole trail.
CREATE INDEX audit_hash ON audit(hash);
