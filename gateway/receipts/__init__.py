"""Receipts: DSNs, MDNs and De-Mail confirmations recognised at intake, matched to sent documents."""
