"""bilevel_anil: few-shot meta-learning as bilevel optimisation on Betty: MAML, first-order MAML,
ANIL, first-order ANIL, iMAML, implicit ANIL, Reptile and the pretraining baseline."""
__version__ = "0.1.0"

from .allocator import keep_freed_memory  # noqa: E402
from .predictor import FewShotModel, load  # noqa: E402

__all__ = ["FewShotModel", "keep_freed_memory", "load", "__version__"]
