"""The expectations service."""
