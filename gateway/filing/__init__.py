"""Writing entries durably into case folders and the quarantine, with safe names."""
