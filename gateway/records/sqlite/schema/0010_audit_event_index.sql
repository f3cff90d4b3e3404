-- v10: find entries by their event. Every verification reads the trail's key rotations
-- (`audit-key-rotated`, a handful in years) to know which key signed which checkpoint;
-- without this index that reads the whole trail, which `audit verify --since` over a
-- day's entries of a long trail cannot afford. `audit log --event` uses it too.
CREATE INDEX audit_event ON audit(event);
