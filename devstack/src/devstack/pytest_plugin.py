"""Pytest fixtures for the real broker and database (filled in by devstack)."""
