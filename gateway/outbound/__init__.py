"""Outbound: documents clerks send for a case, from the CLI or their mail program, to the relay.

``compose`` builds the MIME message, ``sign``/``encrypt`` protect it, ``keys`` finds the
recipients' certificates and keys; ``document.ComposedDocument`` is what the outbox queues;
``outbox`` keeps it durably, ``scheduler`` decides what is due, ``smtp`` delivers it;
``submission`` is the SMTP listener for clerks' mail programs (docs/architecture.md, "outbound").
"""
