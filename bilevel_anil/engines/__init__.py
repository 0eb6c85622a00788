"""Betty engines that order meta-learning steps."""
from .meta_engine import EngineSettings, MetaEngine, step_engine

__all__ = ["EngineSettings", "MetaEngine", "step_engine"]
