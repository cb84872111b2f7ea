"""compactnet.profilers stage."""
