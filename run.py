#!/usr/bin/env python
"""Meta-train and evaluate: ``python run.py --problem anil`` (see ``--help``);
compare meta-gradients: ``python run.py compare-grads`` (see ``compare-grads --help``)."""
import sys

if __name__ == "__main__":
    try:
        from bilevel_anil.cli.console import main
    except KeyboardInterrupt:
        print("run.py: interrupted while starting; nothing was written", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(main())
