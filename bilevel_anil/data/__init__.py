"""Data sources: episodic task samplers (class images, any map-style Dataset, a function) and
the benchmarks' loaders."""
from .class_images import ClassImages
from .episodes import (ClassificationTasks, FunctionTasks, TaskBatch, TaskSampler, TaskSet, dataset_tasks,
                       fixed_tasks, function_tasks, seeded)
from .omniglot import load_omniglot

__all__ = ["ClassificationTasks", "ClassImages", "FunctionTasks", "TaskBatch", "TaskSampler", "TaskSet",
           "dataset_tasks", "fixed_tasks", "function_tasks", "load_omniglot", "seeded"]
