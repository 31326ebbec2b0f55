"""Recipes: configuration plus the few parts that are truly their own, on the shared core."""
