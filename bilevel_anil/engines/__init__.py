"""Betty engines that order meta-learning steps."""
from .meta_engine import EngineSettings, MetaEngine, build_engine, step_engine

__all__ = ["EngineSettings", "MetaEngine", "build_engine", "step_engine"]
