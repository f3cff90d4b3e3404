"""The PostgreSQL backend of the store Protocols: with ``records/sqlite``, the only place that holds SQL."""
