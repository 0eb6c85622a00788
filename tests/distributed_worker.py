"""One process of a data-parallel outer step (started by test_parallel.py with RANK/WORLD_SIZE
set): three outer steps over a fixed meta-batch; rank 0 saves the first meta-gradient and the
final parameters."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bilevel_anil.core import distributed
from parallel_case import outer_steps  # noqa: E402

if __name__ == "__main__":
    name, chunk, dtype, out = sys.argv[1], int(sys.argv[2]), getattr(torch, sys.argv[3]), Path(sys.argv[4])
    torch.set_num_threads(1)
    group = distributed.init_from_environment("cpu")
    grads, params = outer_steps(name, chunk or None, group, dtype)
    if group.is_main:
        torch.save({"grads": grads, "params": params}, out)
    distributed.shutdown()
