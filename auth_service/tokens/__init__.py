"""The signer (kid, x5c), refresh tokens, keys and JWKS."""
