"""Training: the one fit loop (validation, callbacks, time budget, interrupts), the checkpoint
schema and its files, the metrics log, the run-folder lock, the allocator, profiling and
loading pretrained bodies. Above the Betty layer, below the public API."""
