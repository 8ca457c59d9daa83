"""The only code that touches CA private keys: signers, certificate signing, CA ceremonies."""
