"""Tests of the harmful fine-tuning study."""
