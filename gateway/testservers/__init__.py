"""Throwaway servers and fault injectors for the demo, the test suite and the benchmarks.

They live inside the package (not under tests/) because the demo and the benchmarks need
the same real Dovecot and the same network faults as the tests: one implementation, one
set of measured gotchas.
"""
