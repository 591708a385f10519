"""Measure: build a model, time its training steps, sample power, run depth slices and sweeps."""
