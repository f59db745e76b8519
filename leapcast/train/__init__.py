"""Pretraining and draft distillation."""
