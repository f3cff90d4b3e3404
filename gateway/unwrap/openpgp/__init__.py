"""OpenPGP: the layer handler (PGP/MIME and inline) and the throwaway gpg home it works in."""
