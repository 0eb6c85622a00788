"""bilevel_anil: MAML, first-order MAML and ANIL as bilevel optimisation on Betty."""
__version__ = "0.1.0"

from .predictor import FewShotModel, load  # noqa: E402

__all__ = ["FewShotModel", "load", "__version__"]
