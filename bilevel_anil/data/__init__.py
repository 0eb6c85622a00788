"""Data sources: episodic task samplers for Omniglot (and other benchmarks)."""
from .episodes import ClassificationTasks, EpisodeBatch, TaskSampler, TaskSet, fixed_tasks, seeded
from .omniglot import ClassImages, load_omniglot

__all__ = ["ClassificationTasks", "ClassImages", "EpisodeBatch", "TaskSampler", "TaskSet",
           "fixed_tasks", "load_omniglot", "seeded"]
