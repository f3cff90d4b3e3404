"""Outbound: clerks' letters from submission to the relay (docs/architecture.md, "outbound")."""
