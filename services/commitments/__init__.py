"""The commitments service."""
