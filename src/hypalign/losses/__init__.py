"""Training objectives (each documented with its formula and paper)."""
