"""S/MIME: the layer handler, CMS signature verification and certificate path validation."""
