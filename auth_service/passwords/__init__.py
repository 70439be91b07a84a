"""The login path: throttles, the credential cache, fair bcrypt turns, rehashing."""
