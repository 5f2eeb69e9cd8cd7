"""Learned parts: the image encoder, the volume decoders, and the model that joins them."""
