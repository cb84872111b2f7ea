"""compactnet.zoo stage."""
