"""Harmful fine-tuning: align -> user fine-tune (p harmful) -> HS/FA; defenses (defenses.py), telemetry."""
