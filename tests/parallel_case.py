"""The outer steps that test_parallel.py takes in one process, in chunks, and in two processes."""
from __future__ import annotations

from typing import Optional

import torch

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.core.tasks import RepeatBatch
from bilevel_anil.core.distributed import Group
from bilevel_anil.engines import step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import Conv4
from bilevel_anil.problems import HypergradConfig

from helpers import random_episodes

TASKS, STEPS = 4, 3
SETTINGS = {  # inner steps, inner lr, lam, outer optimiser, inner minibatch
    "maml": (3, 0.1, 0.0, "sgd", None),
    "anil": (2, 0.4, 0.0, "sgd", None),
    "imaml": (4, 0.1, 2.0, "sgd", None),
    "reptile": (3, 0.01, 0.0, "sgd", 3),
}


def outer_steps(name: str, task_chunk: Optional[int] = None, group: Group = Group(), dtype=torch.float64):
    """Three outer steps on Conv4 over one fixed meta-batch of 4 tasks (the same seed in every
    process); returns the first step's meta-gradient and the parameters after the last step."""
    steps, lr, lam, outer, inner_batch = SETTINGS[name]
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8, image_size=16).to(dtype)
    batch = random_episodes(tasks=TASKS, ways=3, shots=2, queries=2, shape=(1, 16, 16))
    batch.support.x, batch.query.x = batch.support.x.to(dtype), batch.query.x.to(dtype)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2) if outer == "adam" else torch.optim.SGD(params, lr=0.3)
    engine = step_engine(Learner(model, ALGORITHMS[name], lam=lam), RepeatBatch(batch), TASKS, steps, lr, optimizer,
                         HypergradConfig("cg", iterations=5), inner_batch=inner_batch, task_chunk=task_chunk,
                         group=group)
    torch.manual_seed(1)  # Reptile's minibatch order
    grads = None
    for _ in range(STEPS):
        engine.train_step()
        grads = grads or [g.clone() for g in engine.upper.last_grads]
    return grads, [p.detach().clone() for p in model.parameters()]
