"""Weights and model references: reading checkpoints safely (official layout or
ours), ``convert`` to the Hugging Face folder layout, and ``resolve``, the one function
every command and entry point uses to turn a model reference into a model.
"""
