"""The algorithm family: which parameters the inner loop adapts, on which objective, and how
the meta-gradient is computed.

MAML and ANIL are one definition that differs only in ``adapt``; the first-order variants
differ only in ``first_order``; iMAML adds the proximal term to the inner objective and by
default differentiates it implicitly (``grad="implicit"``). The MAML paper's "pretrained"
baseline is MAML whose inner step size is 0 during meta-training (``pretrain``). Reptile
adapts like first-order MAML (with Adam, β1 = 0, on minibatches) and moves θ towards the
adapted weights instead of along a query-loss gradient (``update="interpolate"``). Everything
else (Env, Problems, Engine, evaluation) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


GRADS = ("unrolled", "implicit")


@dataclass(frozen=True)
class Algorithm:
    """One member of the family.

    adapt: ``"head"`` adapts only the network's head in the inner loop (ANIL; which
           parameters form the head is the learner's choice, see ``Learner``);
           ``"all"`` adapts every parameter (MAML).
    first_order: drop the second-order terms of the unrolled meta-gradient.
    proximal: the inner objective adds ``(λ/2)·‖φ − θ‖²`` to the support loss (iMAML).
    grad: ``"unrolled"`` differentiates through the inner SGD steps; ``"implicit"`` uses the
          implicit function theorem at the inner solution (Betty's hypergradients).
    pretrain: no adaptation during meta-training: the inner step size is 0 there, so the
              upper loss is the query loss at θ itself (multi-task pretraining on all tasks);
              at validation and test the network is fine-tuned like MAML's.
    head_init: where each task's inner loop starts the head unless the learner is given
               another (``bilevel_anil.core.options.HEAD_INITS``): ``"learned"`` (θ's head) or
               ``"prototypes"`` (protonet: pretrain with the support set's prototype head, i.e.
               Prototypical Networks with squared Euclidean distance, evaluated as the
               nearest-centroid classifier).
    """

    name: str
    adapt: str
    first_order: bool = False
    proximal: bool = False
    grad: str = "unrolled"
    pretrain: bool = False
    inner_optimizer: str = "sgd"
    update: str = "gradient"
    head_init: str = "learned"


ALGORITHMS: dict[str, Algorithm] = {
    "anil": Algorithm("anil", adapt="head"),
    "foanil": Algorithm("foanil", adapt="head", first_order=True),
    "maml": Algorithm("maml", adapt="all"),
    "fomaml": Algorithm("fomaml", adapt="all", first_order=True),
    "imaml": Algorithm("imaml", adapt="all", proximal=True, grad="implicit"),
    "ianil": Algorithm("ianil", adapt="head", proximal=True, grad="implicit"),
    # with a zero step the first-order meta-gradient is exact: ∇θ of the query loss at θ
    "pretrain": Algorithm("pretrain", adapt="all", first_order=True, pretrain=True),
    # Snell et al. 2017 as a member of the family: no inner loop in meta-training, the query
    # loss under the support set's prototype head (logits −‖f − μ_c‖² up to a per-query constant)
    "protonet": Algorithm("protonet", adapt="head", first_order=True, pretrain=True, head_init="prototypes"),
    "reptile": Algorithm("reptile", adapt="all", first_order=True, inner_optimizer="adam", update="interpolate"),
}


_SHAPE = ("adapt", "first_order", "proximal", "grad", "pretrain", "update", "head_init")


def partner(algo: Algorithm, **changes: object) -> Algorithm:
    """``algo`` with ``changes`` (fields of ``Algorithm``): the named member of the family
    that has that shape (``partner(maml, adapt="head")`` is anil), else ``algo`` changed under
    its own name (imaml with ``grad="unrolled"``)."""
    wanted = replace(algo, **changes)
    for member in ALGORITHMS.values():
        if all(getattr(member, f) == getattr(wanted, f) for f in _SHAPE):
            return replace(member, inner_optimizer=wanted.inner_optimizer) \
                if "inner_optimizer" in changes else member
    return wanted


def evaluation_steps(algo: Algorithm, head_init: str, inner_steps: int) -> int:
    """Inner steps at validation and test when none are given: the training ones, except for an
    algorithm that does not adapt in meta-training and starts from prototypes (protonet),
    which is evaluated as it trains: 0 steps, the nearest-centroid classifier."""
    return 0 if algo.pretrain and head_init == "prototypes" else inner_steps
