"""The core: algorithms, the one set of option rules, the learner (network split, fast weights,
losses, the inner loop), implicit-gradient solvers, evaluation and the process group.

Torch only: no Betty, no files, no command-line flags. Every layer above builds on it.
"""
