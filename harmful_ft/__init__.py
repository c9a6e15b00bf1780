"""Harmful fine-tuning: alignment, the user's (partly harmful) fine-tuning, harmful score and accuracy."""
