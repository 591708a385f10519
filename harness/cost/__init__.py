"""Estimate and price: a stored run extrapolated to a whole training job, priced per cloud offer."""
