"""The one training engine: every method is a configuration of it."""
