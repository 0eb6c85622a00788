"""Betty engines that order meta-learning steps."""
from .meta_engine import MetaEngine, build_engine, step_engine

__all__ = ["MetaEngine", "build_engine", "step_engine"]
