"""The SQLite backend of the store Protocols: the one place in the gateway that holds SQL."""
