"""What people read: the configured language and time zone (``[ui]``), applied to reports and tables.

The record (ledger, audit trail, manifests, JSON and CSV exports) never passes through
here: it keeps UTC instants and English event names, so it reads the same everywhere.
"""

from gateway.ui.locale import DEFAULT, Locale, is_timestamp, translate

__all__ = ["DEFAULT", "Locale", "is_timestamp", "translate"]
