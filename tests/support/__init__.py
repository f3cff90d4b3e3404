"""Code that only the tests use: fault proxy, PKIs, key sets, audit helpers, store backends, raw SQL for tampering."""
