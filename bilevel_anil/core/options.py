"""The one set of option rules of a learner: which algorithm a name and its switches make
(``resolve_algorithm``) and which inner-loop, meta-gradient and outer-loop settings it takes
(``check_options``).

``MetaLearner`` and every command-line configuration apply these same rules, so the Python
API and ``run.py`` accept and refuse the same things. A broken rule is an ``OptionError``
whose message names the Python arguments (``inner_optimizer``); the command line renders the
same message with its flags (``--inner-optimizer``) through ``OptionError.render``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Collection, Mapping, Optional, Union

from ..errors import UsageError, require_positive
from .algorithms import ALGORITHMS, GRADS, Algorithm, partner
from .fast_weights import INNER_OPTIMIZERS
from .solvers import HYPERGRADS, HypergradConfig

GRAD_CHOICES = (*GRADS, "first_order")
ADAPT_CHOICES = ("all", "head")
# where the proximal term enters iMAML's inner loop: every step, or one pull-back step after
# steps on the support loss alone (the iMAML authors' code)
INNER_PROXIMAL = ("every", "pullback")
# where each task's inner loop starts its head: the meta-learned head (MAML, ANIL), a zero
# head, or the support set's class prototypes (Proto-MAML)
HEAD_INITS = ("learned", "zero", "prototypes")


class OptionError(UsageError):
    """A broken option rule (its message names the arguments as ``⟨name⟩``: see ``UsageError``).

    Examples:
        >>> error = OptionError("⟨inner_lr⟩ must be positive")
        >>> str(error), error.render(lambda name: "--" + name.replace("_", "-"))
        ('inner_lr must be positive', '--inner-lr must be positive')
    """


# Arguments that apply to some algorithms only: given to another, they are refused instead of
# being accepted and ignored. argument -> (to what, whether an algorithm uses it)
# The implicit gradient's settings belong to the proximal objective, not to grad="implicit"
# alone: the same learner with grad="unrolled" keeps them (and records them), so the two
# meta-gradients stay one switch apart.
_PROXIMAL = ("imaml/ianil (the proximal inner objective)", lambda algo: algo.proximal)
_IMPLICIT = ("the implicit meta-gradient of imaml/ianil", lambda algo: algo.proximal)
SCOPES: dict[str, tuple[str, Callable[[Algorithm], bool]]] = {
    "lam": _PROXIMAL, "test_lam": _PROXIMAL, "inner_proximal": _PROXIMAL,
    "hypergrad": _IMPLICIT, "hypergrad_iterations": _IMPLICIT, "neumann_alpha": _IMPLICIT, "darts_alpha": _IMPLICIT,
    "cg_damping": _IMPLICIT, "cg_lam_damping": _IMPLICIT,
}

# argument -> (integer, zero admitted): the counts and rates every learner checks the same way
_POSITIVE: dict[str, tuple[bool, bool]] = {
    "inner_steps": (True, False), "test_inner_steps": (True, True), "inner_batch": (True, False),
    "task_chunk": (True, False), "hypergrad_iterations": (True, False),
    "inner_lr": (False, False), "meta_lr": (False, False), "meta_eps": (False, False), "lam": (False, False),
    "test_lam": (False, True), "neumann_alpha": (False, False), "darts_alpha": (False, False),
    "cg_damping": (False, True), "cg_lam_damping": (False, True),
}


def _check_switches(name: str, adapt: object, grad: Optional[str], inner_optimizer: Optional[str]) -> None:
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise OptionError(f"unknown ⟨algorithm⟩ {name!r}: choose one of {', '.join(ALGORITHMS)}")
    if isinstance(adapt, str) and adapt not in ADAPT_CHOICES:
        raise OptionError(f"⟨adapt⟩ must be 'all', 'head' or a predicate on parameter names, not {adapt!r}")
    if grad is not None and grad not in GRAD_CHOICES:
        raise OptionError(f"⟨grad⟩ must be one of {', '.join(GRAD_CHOICES)}, not {grad!r}")
    if inner_optimizer is not None and inner_optimizer not in INNER_OPTIMIZERS:
        raise OptionError(f"⟨inner_optimizer⟩ must be one of {', '.join(INNER_OPTIMIZERS)}, not {inner_optimizer!r}")
    algo = ALGORITHMS[name]
    if adapt == "head" and algo.pretrain and algo.adapt != "head":
        raise OptionError(f"⟨head_only⟩ does not apply to {name}: it fine-tunes the whole network at test time")
    if algo.update == "interpolate" and (adapt == "head" or grad in GRADS[1:] or grad == "first_order"):
        switch = "head_only" if adapt == "head" else "first_order" if grad == "first_order" else "grad"
        raise OptionError(f"⟨{switch}⟩ does not apply to reptile: its outer update moves θ towards the adapted "
                          "weights of the whole network, with no meta-gradient")
    if grad == "first_order" and algo.pretrain:
        raise OptionError(f"⟨first_order⟩ does not apply to {name}: it has no inner loop in meta-training, so no "
                          "second-order term to drop")


def resolve_algorithm(algorithm: Union[str, Algorithm], adapt: Union[None, str, Callable] = None,
                      grad: Optional[str] = None, inner_optimizer: Optional[str] = None) -> Algorithm:
    """The member of the family named ``algorithm`` with the switches applied.

    Args:
        algorithm: A name of ``ALGORITHMS``, or an ``Algorithm`` already resolved (then only
            ``inner_optimizer`` may change it).
        adapt: ``"all"`` (anil becomes maml), ``"head"`` (maml becomes anil), a predicate on
            parameter names (kept by the learner), or None: the algorithm's.
        grad: ``"unrolled"``, ``"implicit"`` (needs the proximal objective) or
            ``"first_order"`` (the unrolled meta-gradient without second-order terms).
        inner_optimizer: ``"sgd"`` or ``"adam"``; None: the algorithm's.

    Returns:
        The resolved ``Algorithm``.

    Raises:
        OptionError: One line when the combination is not defined, saying what to use instead.

    Examples:
        >>> resolve_algorithm("maml", adapt="head").name, resolve_algorithm("imaml", grad="unrolled").grad
        ('anil', 'unrolled')
        >>> resolve_algorithm("imaml", inner_optimizer="adam")
        Traceback (most recent call last):
        ...
        bilevel_anil.core.options.OptionError: inner_optimizer 'adam' does not fit the implicit meta-gradient: ...
    """
    if isinstance(algorithm, Algorithm):  # already resolved (a run's configuration)
        if adapt is not None or grad is not None:
            raise OptionError("⟨adapt⟩ and ⟨grad⟩ apply to an algorithm given by name; this Algorithm is already "
                              "resolved")
        algo = algorithm if inner_optimizer is None else replace(algorithm, inner_optimizer=inner_optimizer)
        _check_inner_optimizer(algo)
        return algo
    _check_switches(algorithm, adapt, grad, inner_optimizer)
    algo = ALGORITHMS[algorithm]
    if adapt in ADAPT_CHOICES and adapt != algo.adapt:
        algo = partner(algo, adapt=adapt)  # anil <-> maml, ianil <-> imaml
    if grad in GRADS and grad != algo.grad:
        if grad == "implicit" and not algo.proximal:
            instead = partner(algo, first_order=False, proximal=True, grad="implicit").name
            raise OptionError(f"⟨grad⟩ 'implicit' needs the proximal inner objective of imaml/ianil (the implicit "
                              f"gradient of {algo.name}'s inner loop is not defined): use algorithm '{instead}'")
        algo = replace(algo, grad=grad)
    if grad == "first_order" and not algo.first_order and algo.update == "gradient":
        algo = partner(replace(algo, grad="unrolled"), first_order=True)
    if inner_optimizer is not None and inner_optimizer != algo.inner_optimizer:
        algo = replace(algo, inner_optimizer=inner_optimizer)
    _check_inner_optimizer(algo)
    return algo


def _check_inner_optimizer(algo: Algorithm) -> None:
    # The implicit meta-gradient is the implicit function theorem at a stationary point of the
    # proximal objective, reached by the inner loop's plain gradient steps. Adam's steps (and
    # its per-coordinate scaling) are another inner loop: evaluation would adapt with one
    # optimiser and the meta-gradient assume another, so the pair is refused.
    if algo.grad == "implicit" and algo.inner_optimizer != "sgd":
        raise OptionError(f"⟨inner_optimizer⟩ {algo.inner_optimizer!r} does not fit the implicit meta-gradient: it "
                          "assumes the inner loop's plain gradient steps reach a stationary point of the proximal "
                          "objective; use 'sgd', or ⟨grad⟩ 'unrolled'")


def check_options(algo: Algorithm, options: Mapping[str, Any], given: Collection[str] = ()) -> None:
    """The settings of a learner of ``algo``, one ``OptionError`` line for the first broken rule.

    Args:
        algo: The resolved algorithm.
        options: Argument name -> value; None values are not set and not checked.
        given: The arguments the user gave explicitly: one that ``algo`` does not use
            (``SCOPES``) is refused rather than ignored.

    Raises:
        OptionError: On a value out of range or a setting the algorithm does not use.

    Examples:
        >>> from bilevel_anil.core.algorithms import ALGORITHMS
        >>> check_options(ALGORITHMS["imaml"], {"lam": 2.0, "inner_lr": 0.1}, given={"lam"})
        >>> check_options(ALGORITHMS["maml"], {"lam": 2.0}, given={"lam"})
        Traceback (most recent call last):
        ...
        bilevel_anil.core.options.OptionError: lam applies to imaml/ianil (the proximal inner objective); ...
    """
    for name in given:
        if name in SCOPES and options.get(name) is not None and not SCOPES[name][1](algo):
            raise OptionError(f"⟨{name}⟩ applies to {SCOPES[name][0]}; {algo.name} with the {algo.grad} "
                              f"meta-gradient does not use it: drop ⟨{name}⟩")
    for name, (integer, zero) in _POSITIVE.items():
        value = options.get(name)
        if value is not None:
            try:
                require_positive(f"⟨{name}⟩", value, integer=integer, zero=zero or (name == "inner_lr" and algo.pretrain))
            except UsageError as exc:
                raise OptionError(exc.template) from None
    _check_choices(algo, options)
    if algo.pretrain and options.get("inner_steps") not in (None, 1):
        raise OptionError(f"⟨inner_steps⟩: {algo.name} does not adapt during meta-training; set the fine-tuning "
                          "steps used for validation with ⟨test_inner_steps⟩")
    if options.get("inner_batch") is not None and algo.grad == "implicit":
        raise OptionError("⟨inner_batch⟩ needs the unrolled meta-gradient: the implicit one assumes full-batch inner "
                          "steps (drop ⟨inner_batch⟩, or use ⟨grad⟩ 'unrolled')")


def _check_choices(algo: Algorithm, options: Mapping[str, Any]) -> None:
    hypergrad = options.get("hypergrad")
    if isinstance(hypergrad, HypergradConfig):
        if hypergrad.method not in HYPERGRADS:
            raise OptionError(f"unknown ⟨hypergrad⟩ method {hypergrad.method!r}: choose one of {', '.join(HYPERGRADS)}")
        for name, zero in (("iterations", False), ("alpha", False), ("darts_alpha", False), ("damping", True),
                           ("lam_damping", True)):
            try:
                require_positive(f"⟨hypergrad⟩.{name}", getattr(hypergrad, name), integer=name == "iterations",
                                 zero=zero)
            except UsageError as exc:
                raise OptionError(exc.template) from None
    elif hypergrad is not None and hypergrad not in HYPERGRADS:
        raise OptionError(f"unknown ⟨hypergrad⟩ {hypergrad!r}: choose one of {', '.join(HYPERGRADS)}")
    proximal_where = options.get("inner_proximal")
    if proximal_where is not None and proximal_where not in INNER_PROXIMAL:
        raise OptionError(f"⟨inner_proximal⟩ must be one of {', '.join(INNER_PROXIMAL)}, not {proximal_where!r}")
    if proximal_where == "pullback" and not algo.proximal:
        raise OptionError("⟨inner_proximal⟩ 'pullback' applies to the proximal inner objective of imaml/ianil")
    head_init = options.get("head_init")
    if head_init is not None and head_init not in HEAD_INITS:
        raise OptionError(f"unknown ⟨head_init⟩ {head_init!r}: choose one of {', '.join(HEAD_INITS)}")


def get_algorithm(name: str, first_order: bool = False, head_only: bool = False,
                  grad: Optional[str] = None, inner_optimizer: Optional[str] = None, *,
                  strict: bool = False) -> Algorithm:
    """Look up ``name`` and apply the general switches, under the rules of
    ``bilevel_anil.core.options.resolve_algorithm``.

    ``first_order`` turns any unrolled member into its first-order variant (a member that is
    first-order already stays as it is, unless ``strict``: then asking for it is an error, as
    when a user asks for it); ``head_only`` restricts the inner loop to the head (``maml``
    becomes ``anil``, ``imaml`` becomes ``ianil``); ``grad`` swaps the unrolled and the implicit
    meta-gradient; ``inner_optimizer`` replaces the member's inner optimiser.
    """
    if first_order and grad == "implicit":
        raise OptionError("⟨first_order⟩ applies to the unrolled meta-gradient: use ⟨grad⟩ 'unrolled', or the "
                          "implicit gradient without it")
    if first_order and not strict and name in ALGORITHMS and ALGORITHMS[name].first_order:
        first_order = False  # a resolved configuration of a first-order member (pretrain, reptile, fomaml)
    return resolve_algorithm(name, adapt="head" if head_only else None, grad="first_order" if first_order else grad,
                             inner_optimizer=inner_optimizer)
