"""Outbound: documents clerks send for a case, composed here and queued by the outbox.

``compose`` builds the MIME message, ``sign``/``encrypt`` protect it, ``keys`` finds the
recipients' certificates and keys; ``document.ComposedDocument`` is what the outbox queues.
"""
