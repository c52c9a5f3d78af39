"""Helpers of the test suite: the in-process stack, PostgreSQL schemas, span queries."""
