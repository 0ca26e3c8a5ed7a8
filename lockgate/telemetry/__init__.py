"""Logs, metrics, analytics and traces: all fed from records, off the request path."""
