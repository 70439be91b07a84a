"""What the service records: the audit log and the metrics."""
