"""The auditors' side: verify the record against the files, query it, and render reports."""
