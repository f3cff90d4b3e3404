"""From an untrusted subject to a case: rules, Aktenzeichen normalisation and folder names."""
