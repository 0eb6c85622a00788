"""Betty problems: a working unrolled ``IterativeProblem`` and the meta-learning levels."""
from .iterative import IterativeProblem
from .meta import AdaptProblem, MetaProblem

__all__ = ["AdaptProblem", "IterativeProblem", "MetaProblem"]
