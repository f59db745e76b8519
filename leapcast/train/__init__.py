"""Pretraining and draft distillation.

``config`` (the frozen configs and their JSON files, with ``extends``), ``crops``
(the series pool and tokenized crops), ``initial`` (starting weights), ``loss``,
``pretrain`` (the loop and its checkpoints), ``distill`` (drafts) and ``grow``
(stacking, re-binning, re-bucketing). The stage configs of the bundled models
are in ``configs/``, in the order docs/training.md runs them.
"""
