"""Inbound flow: IMAP fetch -> decide (workers) -> ledger intent -> case folder -> tidy the server."""
