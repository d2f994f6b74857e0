"""A Socket.IO service over TLS websockets, rendered from a Copier template (see answers)."""
