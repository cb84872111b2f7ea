"""compactnet.search stage."""
