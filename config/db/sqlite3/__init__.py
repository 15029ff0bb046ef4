"""Django's SQLite backend, with writers that queue for the database on a lock file."""
