"""De-Mail (BSI TR 01201): the ``X-de-mail-*`` metadata and the provider's integrity value.

``headers.parse_demail_headers`` reads the metadata; ``integrity.verify_integrity`` proves
(or refutes) ``X-de-mail-integrity`` against the provider anchors (``anchors.py`` loads
them, ``trust.py`` makes the validator); ``verdict.assess`` runs both and judges the
"absenderbestätigt" claim. Pure functions over the fetched bytes that never
raise on hostile input. No imports here: the configuration loader reads ``anchors.py``
without pulling in the path validator.
"""
