"""Count: FLOPs of a training step, by torch's dispatcher (primary), fvcore, and closed-form formulas."""
