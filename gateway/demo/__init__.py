"""What ``poststelle demo`` needs: a throwaway Dovecot, a demo PKI and sample letters (nothing else ships for it)."""
