"""A folder that an upstream system drops files into."""

from pathlib import Path

import dagster as dg


class InboxResource(dg.ConfigurableResource):
    path: str
    # Files modified less than this long ago are treated as half-written and left for a later tick.
    settle_seconds: float = 1.0
    # How long one sensor tick may watch the folder for a new file (framework.inbox.wait_for_new_files).
    # 0 (the default): list once and return, as `agent-pipelines tick` and the tests need. Under the
    # daemon, whose sensor loop comes round every 5 s, a watch of most of that loop cuts the pickup.
    watch_seconds: float = 0.0

    @property
    def root(self) -> Path:
        return Path(self.path)
