#!/usr/bin/env python
"""Meta-train and evaluate: ``python run.py --problem anil`` (see ``--help``);
compare meta-gradients: ``python run.py compare-grads`` (see ``compare-grads --help``)."""
import sys


def _main() -> int:
    try:  # importing torch takes seconds: a Ctrl-C then is one line too
        if sys.argv[1:2] == ["compare-grads"]:
            from bilevel_anil.profiling import reexec_with_returnable_memory
            reexec_with_returnable_memory()  # so that its peak-memory column follows live tensors
        from bilevel_anil.cli import main
    except KeyboardInterrupt:
        print("run.py: interrupted while starting; nothing was written", file=sys.stderr, flush=True)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(_main())
