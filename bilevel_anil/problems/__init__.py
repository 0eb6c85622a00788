"""Betty problems: a working unrolled ``IterativeProblem``, the meta-learning levels and the
implicit hypergradient settings."""
from .hypergradients import HYPERGRADS, HypergradConfig
from .iterative import IterativeProblem
from .meta import ImplicitAdapt, InnerObjective, MetaProblem, ReptileProblem, UnrolledAdapt, build_lower, build_upper

__all__ = ["HYPERGRADS", "HypergradConfig", "ImplicitAdapt", "InnerObjective", "IterativeProblem", "MetaProblem",
           "ReptileProblem", "UnrolledAdapt", "build_lower", "build_upper"]
