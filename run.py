#!/usr/bin/env python
"""Meta-train and evaluate: ``python run.py --problem anil`` (see ``--help``);
compare meta-gradients: ``python run.py compare-grads`` (see ``compare-grads --help``)."""
import sys

from bilevel_anil.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["compare-grads"]:
        from bilevel_anil.profiling import reexec_with_returnable_memory
        reexec_with_returnable_memory()  # so that its peak-memory column follows live tensors
    sys.exit(main())
