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
from hypalign.objectives.library import (
    BackboneReconstruction,
    Commitment,
    Contrastive,
    Entailment,
    LFQEntropy,
    MaskedLM,
    PairwiseCE,
    SegmentAlignment,
    TermMatching,
)

__all__ = ["BackboneReconstruction", "Commitment", "Contrastive", "Entailment", "LFQEntropy", "MaskedLM", "Objective",
           "ObjectiveSet", "ObjectiveSpec", "PairwiseCE",
           "SegmentAlignment", "TermMatching", "format_objectives", "objective_kinds", "parse_objectives",
           "register_objective"]
