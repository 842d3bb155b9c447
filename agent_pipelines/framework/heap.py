"""The garbage collector during bulk work.

A batch step allocates many objects (a chunk's intents, carries, trace rows) in a process that already
holds millions (Dagster, Great Expectations, pandas, the definitions). Python's full collections rescan
all of them, and bulk allocation triggers those often: on the batch path that was ~10 % of the CPU,
most of it inside pickle.loads of a chunk and the chunk's intent reads (issue 11). gc.freeze moves the
objects that exist now out of the collector's view; the bulk work's own garbage is still collected, and
unfreeze hands the older objects back afterwards."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def heap_frozen() -> Iterator[None]:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
