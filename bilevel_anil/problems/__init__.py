"""Betty problems: a working unrolled ``IterativeProblem``, the meta-learning levels and the
implicit hypergradient settings."""
from .hypergradients import HYPERGRADS, HypergradConfig
from .iterative import IterativeProblem
from .meta import ImplicitAdapt, InnerObjective, MetaProblem, UnrolledAdapt, build_lower

__all__ = ["HYPERGRADS", "HypergradConfig", "ImplicitAdapt", "InnerObjective", "IterativeProblem", "MetaProblem",
           "UnrolledAdapt", "build_lower"]
