"""Adapters: databases and their migrations, the queue, mail."""
