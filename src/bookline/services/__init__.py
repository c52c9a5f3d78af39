"""The services of Bookline, one package each: ``api.py`` (FastAPI app), ``handlers.py`` (the work),
``client.py`` (typed HTTP client used by the other services), ``tables.py`` and ``migrations/``."""
