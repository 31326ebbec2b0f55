"""Models: encoders with heads that map into a geometry, and embedding tables."""
