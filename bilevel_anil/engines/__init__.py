"""Betty engines that order meta-learning steps."""
from .meta_engine import EngineSettings, MetaEngine

__all__ = ["EngineSettings", "MetaEngine"]
