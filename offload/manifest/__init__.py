"""The manifest database: what is offloaded, the purge outbox and the sync runs' records."""
