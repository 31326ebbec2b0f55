"""Pluggable objectives and the miners/samplers that feed them (:mod:`hypalign.objectives.base`,
:mod:`hypalign.objectives.library`, :mod:`hypalign.objectives.miners`)."""

from hypalign.objectives.base import (
    Objective,
    ObjectiveSet,
    ObjectiveSpec,
    format_objectives,
    objective_kinds,
    parse_objectives,
    register_objective,
)
from hypalign.objectives.library import Contrastive, Entailment, MaskedLM, PairwiseCE, SegmentAlignment, TermMatching

__all__ = ["Contrastive", "Entailment", "MaskedLM", "Objective", "ObjectiveSet", "ObjectiveSpec", "PairwiseCE",
           "SegmentAlignment", "TermMatching", "format_objectives", "objective_kinds", "parse_objectives",
           "register_objective"]
