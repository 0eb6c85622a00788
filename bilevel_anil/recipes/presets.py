"""Named protocols of the papers (``--preset NAME``): each sets flags to a paper's values and
says where they come from; flags given explicitly on the command line override a preset."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    source: str
    values: dict[str, Any]


_MAML_5W = {"dataset": "omniglot", "ways": 5, "shots": 1, "queries": 1, "inner_steps": 1, "test_inner_steps": 3,
            "inner_lr": 0.4, "meta_lr": 0.001, "meta_batch": 32, "iterations": 60000, "val_every": 1000}
_MAML_20W = {"dataset": "omniglot", "ways": 20, "shots": 1, "queries": 1, "inner_steps": 5, "test_inner_steps": 5,
             "inner_lr": 0.1, "meta_lr": 0.001, "meta_batch": 16, "iterations": 60000, "val_every": 1000}
_IMAML = {"dataset": "omniglot", "arch": "conv4-strided", "shots": 1, "queries": 1, "inner_lr": 0.1, "lam": 2.0,
          "test_lam": 0.0, "hypergrad": "cg", "hypergrad_iterations": 5, "cg_damping": 1.0,
          "cg_lam_damping": 10.0, "inner_proximal": "pullback", "meta_batch": 32,
          "meta_lr": 0.001, "meta_eps": 0.001, "iterations": 20000, "val_every": 500}
_IMAML_5W = {"problem": "imaml", "ways": 5, "inner_steps": 16, "test_inner_steps": 16, **_IMAML}
_REPTILE = {"dataset": "omniglot", "arch": "conv4-strided", "shots": 1, "train_shots": 10, "queries": 1,
            "meta_lr": 1.0, "meta_batch": 5, "test_inner_steps": 50, "val_every": 1000, "inner_optimizer": "adam"}

PRESETS: dict[str, Preset] = {
    "maml-omniglot-5w1s": Preset(
        "Finn et al. 2017, appendix A.1, and cbfinn/maml's README command: 1 step at α = 0.4 in training, "
        "3 at test, meta-batch 32, Adam 1e-3, 60 000 steps, 1 query per class",
        {"problem": "maml", **_MAML_5W}),
    "maml-omniglot-20w1s": Preset(
        "Finn et al. 2017, appendix A.1: 5 steps at α = 0.1 in training and at test, meta-batch 16, 60 000 steps",
        {"problem": "maml", **_MAML_20W}),
    "anil-omniglot-5w1s": Preset(
        "Raghu et al. 2020 (ANIL) use MAML's Omniglot hyper-parameters (appendix): as maml-omniglot-5w1s",
        {"problem": "anil", **_MAML_5W}),
    "anil-omniglot-20w1s": Preset(
        "Raghu et al. 2020 (ANIL), with MAML's 20-way Omniglot hyper-parameters: as maml-omniglot-20w1s",
        {"problem": "anil", **_MAML_20W}),
    "imaml-omniglot-5w1s": Preset(
        "Rajeswaran et al. 2019 and aravindr93/imaml_dev (examples/README.md and omniglot_implicit_maml.py): "
        "λ = 2, 16 SGD steps at 0.1 on the support loss then one on the proximal term, 5 CG steps on the authors' damped system ((1 + 1)·I + H/(λ + 10)), meta-batch 32, Adam 1e-3 (eps 1e-3), "
        "strided conv net without max-pooling, test: 16 steps with λ = 0",
        _IMAML_5W),
    "imaml-omniglot-5w1s-cpu": Preset(
        "this package's CPU recipe (docs/results/imaml.md, What holds iMAML back on a CPU): imaml-omniglot-5w1s with Adam 3e-3 "
        "(eps 1e-8), meta-batch 16 and 15 queries per class, 30 minutes of outer steps; measured: 90% validation "
        "after 1,182 s of outer steps on 2 CPU cores",
        {**_IMAML_5W, "queries": 15, "meta_lr": 0.003, "meta_eps": 1e-8, "meta_batch": 16, "val_every": 50,
         "time_budget": 1800.0}),
    "imaml-omniglot-20w1s": Preset(
        "as imaml-omniglot-5w1s with 20 ways and 25 inner steps (Rajeswaran et al. 2019)",
        {"problem": "imaml", "ways": 20, "inner_steps": 25, "test_inner_steps": 25, **_IMAML}),
    "reptile-omniglot-5w1s": Preset(
        "Nichol et al. 2018 and openai/supervised-reptile's README (1-shot 5-way Omniglot): 10 shots per class "
        "in training, 5 Adam steps (β1 = 0, lr 0.001) on minibatches of 10, meta-batch 5, ε = 1 annealed to 0 "
        "over 100 000 steps, 50 steps at test",
        {"problem": "reptile", "ways": 5, "inner_steps": 5, "inner_batch": 10, "inner_lr": 0.001,
         "iterations": 100000, **_REPTILE}),
    "reptile-omniglot-20w1s": Preset(
        "openai/supervised-reptile's README (1-shot 20-way Omniglot): minibatches of 20, 10 inner steps at lr "
        "0.0005, meta-batch 5, 200 000 steps, 50 steps at test",
        {"problem": "reptile", "ways": 20, "inner_steps": 10, "inner_batch": 20, "inner_lr": 0.0005,
         "iterations": 200000, **_REPTILE}),
    "maml-sine": Preset(
        "Finn et al. 2017, section 5.1, with the inner step 0.001 that cbfinn/maml's sinusoid command runs: "
        "K = 10, 10 queries, 1 step, meta-batch 25, Adam 1e-3, 70 000 steps",
        {"problem": "maml", "dataset": "sine", "shots": 10, "queries": 10, "inner_steps": 1, "inner_lr": 0.001,
         "meta_lr": 0.001, "meta_batch": 25, "iterations": 70000}),
    "reptile-sine": Preset(
        "Nichol et al. 2018, figure 1 (openai's sine demo): one SGD epoch at lr 0.02 over 50 points in minibatches "
        "of 10, ε = 0.1 annealed to 0 over 30 000 steps, one task per step, 32 steps at test",
        {"problem": "reptile", "dataset": "sine", "train_shots": 50, "inner_steps": 5, "inner_batch": 10,
         "inner_lr": 0.02, "inner_optimizer": "sgd", "meta_lr": 0.1, "meta_batch": 1, "iterations": 30000,
         "test_inner_steps": 32, "val_every": 3000}),
}


TASK_SHAPE = ("problem", "dataset", "ways", "shots", "queries")


def algorithm_settings(name: str) -> dict[str, Any]:
    """A preset's values without the task shape: an algorithm's defaults on that dataset."""
    return {k: v for k, v in PRESETS[name].values.items() if k not in TASK_SHAPE}
