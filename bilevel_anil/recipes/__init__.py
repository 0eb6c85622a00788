"""Recipes: library functions built from the public API, with no argument parsing: one run
(train and test), the pretrain -> meta-train -> fine-tune pipeline, the ANIL scenarios,
the meta-gradient comparison, body pretraining, fine-tuning, nearest centroids, plots,
and the task suites of the benchmarks."""
