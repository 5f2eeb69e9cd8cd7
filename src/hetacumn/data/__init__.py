"""Training data: particle images prepared for the model (masked, normalised, transformed)."""
