"""The engine: the imperative shell around the pure core (`bridge.core`).

* `cycle`       the Engine: one cycle over every link, the write pool, commits and failures;
* `reading`     reading both sides (batches, bookmarks, the incremental Tracker poll);
* `executor`    one link's actions -> requests -> observed outcomes -> `core.outcomes.settle`;
* `transitions` walking a Tracker workflow step by step, saying exactly how far it got;
* `creation`    creating Tracker issues exactly once (intents, `unique`, the watermark);
* `relink`      rebuilding links and baselines from both sides;
* `report`      what one cycle did.
"""

from bridge.engine.cycle import Engine
from bridge.engine.reading import TRACKER_CURSOR
from bridge.engine.report import CycleReport

__all__ = ["TRACKER_CURSOR", "CycleReport", "Engine"]
