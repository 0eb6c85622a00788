"""The public Python API: ``MetaLearner`` (one object per meta-learning run) and ``load`` /
``FewShotModel`` (a trained checkpoint, ready to adapt to new images)."""
