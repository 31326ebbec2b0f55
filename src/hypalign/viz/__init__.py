"""Plots (matplotlib, imported lazily): the Poincaré disk."""
