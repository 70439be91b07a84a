"""The operator's command line, ``auth-service``."""
