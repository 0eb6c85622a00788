"""Betty environments that supply episodic data."""
from .episodic import EpisodicEnv

__all__ = ["EpisodicEnv"]
