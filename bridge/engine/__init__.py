"""The engine: the imperative shell around the pure core (`bridge.core`).

* `cycle`       the Engine: one cycle over every link, the write pool, commits and failures;
* `reading`     reading both sides (batches, bookmarks, the incremental Tracker poll);
* `executor`    one link's actions -> requests -> observed outcomes -> `core.outcomes.settle`;
* `transitions` walking a Tracker workflow step by step, saying exactly how far it got;
* `creation`    creating Tracker issues exactly once (intents, `unique`, the watermark);
* `pool`        the write workers of a cycle and the commits of their links;
* `relink`      rebuilding links and baselines from both sides.

What a cycle did (`CycleReport`) and what one link did (`LinkRun`) are plain records in the
core, so that the commands, `render` and the metrics read them without importing the engine.
"""

from bridge.core.report import CycleReport
from bridge.engine.cycle import Engine
from bridge.engine.reading import TRACKER_CURSOR

__all__ = ["TRACKER_CURSOR", "CycleReport", "Engine"]
