"""Running the gateway: the daemon's mailbox workers, signals and backoff."""
