#!/usr/bin/env python
"""Meta-train and evaluate: ``python run.py --problem anil`` (see ``--help``)."""
import sys

from bilevel_anil.cli import main

if __name__ == "__main__":
    sys.exit(main())
