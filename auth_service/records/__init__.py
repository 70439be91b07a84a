"""What the service records, and the formats it writes: the audit log, the metrics, and the
compact JSON and RFC 3339 times that answers, tokens and log lines share."""
