"""MIME within limits: byte-exact cutting, the one header decoder, and parsed messages."""
