"""compactnet.search.methods: compression methods usable alone and inside the search.

- :mod:`~compactnet.search.methods.lowrank`: accnn's low-rank decomposition (vertical + horizontal convs,
  truncated-SVD linears), ranks by PCA energy for a MACs speedup or by predicted latency.
- :mod:`~compactnet.search.methods.weight_sharing`: retraining-free weight sharing (Dupuis et al.) with a
  two-step heuristic exploration, stored as bit-packed indices + codebooks in safetensors.
- :mod:`~compactnet.search.methods.int8`: post-training static QDQ int8 (onnxruntime) calibrated on real images.
- :mod:`~compactnet.search.methods.fisher`: Fisher pruning (Theis et al.) as a search importance criterion.
- :mod:`~compactnet.search.methods.compose`: trim + low-rank + int8 chosen per iteration by predicted
  latency gain per validation accuracy lost.

Submodules are imported on use (``from compactnet.search.methods import lowrank``).
"""
