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

__all__ = ["Objective", "ObjectiveSet", "ObjectiveSpec", "format_objectives", "objective_kinds",
           "parse_objectives", "register_objective"]
