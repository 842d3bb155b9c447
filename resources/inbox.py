"""A folder that an upstream system drops files into."""

from pathlib import Path

import dagster as dg


class InboxResource(dg.ConfigurableResource):
    path: str
    # Files modified less than this long ago are treated as half-written and left for a later tick.
    settle_seconds: float = 1.0

    @property
    def root(self) -> Path:
        return Path(self.path)
