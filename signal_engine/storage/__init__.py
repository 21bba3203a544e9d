"""Storage-side domain: records, ingest, replay and point-in-time alignment of stored data."""
