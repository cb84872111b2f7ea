"""compactnet.predictors stage."""
