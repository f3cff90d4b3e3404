"""The durable record: messages and the audit chain behind store Protocols; SQL lives in its sqlite backend."""
