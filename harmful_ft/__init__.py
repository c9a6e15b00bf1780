"""Harmful fine-tuning: align -> user fine-tune (p harmful) -> harmful score HS and fine-tune accuracy FA;
defenses as step strategies (defenses.py) and per-step telemetry (telemetry.py)."""
