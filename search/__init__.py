"""compactnet.search: platform-aware progressive trimming (the CompactNet loop).

- :mod:`~compactnet.search.groups`: channel groups (Torch-Pruning DepGraph), pruning, replayable history.
- :mod:`~compactnet.search.importance`: which channels to keep (l2, group-l2, random, taylor).
- :mod:`~compactnet.search.latency`: the ``LatencyModel`` protocol the loop consumes.
- :mod:`~compactnet.search.schedule`: Eq. 1-2 sub-targets, Table-3 settings, presets, width choice.
- :mod:`~compactnet.search.loop`: the iterations, stop-on-measured, re-planning, checkpoints.
- :mod:`~compactnet.search.scoring`: candidate scoring (subsets, short fine-tunes, batch-norm recalibration).
- :mod:`~compactnet.search.measuring`: original vs trimmed measured by the protocol (``Measured``).
- :mod:`~compactnet.search.snapshots`: networks saved as measured speedups cross thresholds.
- :mod:`~compactnet.search.baselines`: uniform width scaling and the extra-training control beside a result.
- :mod:`~compactnet.search.optimize`: :func:`optimize`, the whole stage for the CLI.
"""

from compactnet.search.groups import (ChannelGroup, GroupPruner, PruneRecord, config_from_model,
                                      history_from_json, history_to_json)
from compactnet.search.importance import get_importance
from compactnet.search.latency import LatencyModel, MacsLatencyModel, as_latency_model
from compactnet.search.loop import Measured, ProgressiveSearch, SearchState, protocol_measure
from compactnet.search.optimize import SearchResult, optimize
from compactnet.search.schedule import PRESETS, Preset, choose_width, get_preset, solve_t_init, sub_targets
from compactnet.search.snapshots import Snapshots, snapshot_tag

__all__ = ["ChannelGroup", "GroupPruner", "PruneRecord", "config_from_model", "history_from_json",
           "history_to_json", "get_importance", "LatencyModel", "MacsLatencyModel", "as_latency_model",
           "Measured", "ProgressiveSearch", "SearchState", "protocol_measure", "SearchResult", "optimize",
           "Snapshots", "snapshot_tag", "PRESETS", "Preset", "choose_width", "get_preset", "solve_t_init", "sub_targets"]
