"""Evaluation: metrics and diagnostics (δ-hyperbolicity).

Nothing else in hypalign computes these numbers; recipes call this package.
"""

from hypalign.eval.delta import DeltaResult, delta_basepoint, delta_exact, delta_hyperbolicity, suggest_curvature

__all__ = ["DeltaResult", "delta_basepoint", "delta_exact", "delta_hyperbolicity", "suggest_curvature"]
