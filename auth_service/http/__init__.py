"""HTTP in and out: the token endpoint, Basic credentials, JSON answers, health and metrics."""
