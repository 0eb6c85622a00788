"""The algorithm family: which parameters the inner loop adapts and whether it is differentiated.

MAML and ANIL are one definition that differs only in ``adapt``; the first-order variants
differ only in ``first_order``. Everything else (Env, Problems, Engine, evaluation) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Algorithm:
    """One member of the family.

    adapt: ``"head"`` adapts only the classifier head in the inner loop (ANIL);
           ``"all"`` adapts every parameter (MAML).
    first_order: drop the second-order terms of the unrolled meta-gradient.
    """

    name: str
    adapt: str
    first_order: bool

    def adapts(self, param_name: str) -> bool:
        """Whether the inner loop adapts the parameter called ``param_name``."""
        return self.adapt == "all" or param_name.startswith("head.")


ALGORITHMS: dict[str, Algorithm] = {
    "anil": Algorithm("anil", adapt="head", first_order=False),
    "foanil": Algorithm("foanil", adapt="head", first_order=True),
    "maml": Algorithm("maml", adapt="all", first_order=False),
    "fomaml": Algorithm("fomaml", adapt="all", first_order=True),
}


def get_algorithm(name: str, first_order: bool = False) -> Algorithm:
    """Look up ``name``; ``first_order=True`` turns any member into its first-order variant."""
    if name not in ALGORITHMS:
        raise UsageError(
            f"unknown problem {name!r}: choose one of {', '.join(sorted(ALGORITHMS))}"
        )
    algo = ALGORITHMS[name]
    if first_order and not algo.first_order:
        algo = Algorithm(algo.name, algo.adapt, True)
    return algo
