"""A folder that an upstream system drops files into."""

from pathlib import Path

import dagster as dg


class InboxResource(dg.ConfigurableResource):
    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)
