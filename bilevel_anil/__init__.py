"""bilevel_anil: few-shot meta-learning as bilevel optimisation on Betty: MAML, first-order MAML,
ANIL, first-order ANIL, iMAML, implicit ANIL, Reptile and the pretraining baseline.

The Python API (names load on first use: ``import bilevel_anil`` loads neither Betty nor
learn2learn):

* ``MetaLearner``: any ``nn.Module`` + an algorithm: ``meta_step``, ``meta_gradient``,
  ``fit`` (with callbacks: ``StepInfo``, ``EarlyStopping``), ``evaluate``, ``adapt``,
  ``save``/``load``;
* tasks: ``TaskBatch``, ``TaskSampler``, ``dataset_tasks``,
  ``function_tasks``, ``image_folder_tasks``;
* ``compare_meta_gradients``: implicit vs unrolled meta-gradients against the exact one;
* ``load`` / ``FewShotModel``: a trained checkpoint, ready to adapt to new images;
* the pretrain → meta-train → fine-tune recipe: ``run_pipeline`` (``PipelineConfig``)
  and its stages: ``BodyPretrainConfig`` (for
  ``bilevel_anil.recipes.pretrain_body.pretrain_body``), the nearest-centroid classifier
  (``CentroidRule``, ``centroid_accuracy``) and test-time fine-tuning
  (``FineTune``, ``choose_fine_tune``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "MetaLearner": "api.meta_learner", "Adapted": "api.adapted", "FitResult": "api.meta_learner",
    "TaskBatch": "core.tasks", "TaskSet": "core.tasks", "TaskSampler": "core.tasks",
    "dataset_tasks": "data.episodes", "function_tasks": "data.episodes",
    "image_folder_tasks": "data.folder",
    "compare_meta_gradients": "recipes.compare",
    "StepInfo": "training.callbacks", "EarlyStopping": "training.callbacks",
    "Interval": "core.evaluation",
    "FewShotModel": "api.predictor", "load": "api.predictor",
    "keep_freed_memory": "training.allocator",
    "PipelineConfig": "recipes.pipeline", "run_pipeline": "recipes.pipeline",
    "BodyPretrainConfig": "recipes.pretrain_body",
    "CentroidRule": "recipes.nearest_centroid", "centroid_accuracy": "recipes.nearest_centroid",
    "FineTune": "recipes.fine_tune", "choose_fine_tune": "recipes.fine_tune",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    # ruff: noqa: F401
    from .training.allocator import keep_freed_memory
    from .training.callbacks import EarlyStopping, StepInfo
    from .recipes.compare import compare_meta_gradients
    from .core.tasks import TaskBatch, TaskSampler, TaskSet
    from .data.episodes import dataset_tasks, function_tasks
    from .data.folder import image_folder_tasks
    from .core.evaluation import Interval
    from .recipes.fine_tune import FineTune, choose_fine_tune
    from .recipes.nearest_centroid import CentroidRule, centroid_accuracy
    from .recipes.pipeline import PipelineConfig, run_pipeline
    from .recipes.pretrain_body import BodyPretrainConfig
    from .api.adapted import Adapted
    from .api.meta_learner import FitResult, MetaLearner
    from .api.predictor import FewShotModel, load


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bilevel_anil' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
