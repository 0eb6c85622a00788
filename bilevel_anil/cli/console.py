"""The command line's entry point, shared by ``python run.py`` and the ``bilevel-anil``
command. It imports nothing heavy itself, so a Ctrl-C while torch loads is one line too."""
from __future__ import annotations

import sys


def main(prog: str = "run.py") -> int:
    """Run the command line on ``sys.argv``; its exit status."""
    try:  # importing torch takes seconds: a Ctrl-C then is one line too
        if sys.argv[1:2] == ["compare-grads"]:
            from ..training.profiling import reexec_with_returnable_memory
            reexec_with_returnable_memory()  # so that its peak-memory column follows live tensors
        from .run import main as cli_main
    except KeyboardInterrupt:
        print(f"{prog}: interrupted while starting; nothing was written", file=sys.stderr, flush=True)
        return 130
    return cli_main()


def console_main() -> None:
    """The ``bilevel-anil`` console command (the same as ``python run.py``)."""
    sys.exit(main("bilevel-anil"))
