"""An inbox tick that watches its folder (InboxResource.watch_seconds, what the daemon is given) picks up
a file as soon as it is complete, keeps the settle rule and the kill switch, and returns when its
budget is spent. The budgets below are far above what the behaviour needs: a broken watch shows as a
tick that ran its whole budget, which the elapsed-time assertions catch."""

import os
import threading
import time
from pathlib import Path

from agent_pipelines.framework import controls
from agent_pipelines.framework.intents import file_intent_id
from agent_pipelines.framework.tables import intents
from agent_pipelines.project import Project
from resources.inbox import InboxResource
from tests.conftest import invoice_json
from tests.test_ingestion import OLD, count, evaluate

LONG = 30.0  # a watch that is never meant to run out


def watching(project: Project, *, settle: float = 1.0, watch: float = LONG) -> dict[str, InboxResource]:
    return {"invoice_inbox": InboxResource(path=str(project.settings.invoice_inbox), settle_seconds=settle,
                                           watch_seconds=watch)}


def drop_atomically(inbox: Path, name: str, content: bytes, mtime: float) -> None:
    """How an upstream system should deliver: written under another name, then renamed in."""
    tmp = inbox.parent / f".{name}.tmp"
    tmp.write_bytes(content)
    os.utime(tmp, (mtime, mtime))
    tmp.replace(inbox / name)


def later(seconds: float, fn) -> threading.Timer:  # type: ignore[no-untyped-def]
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def test_a_file_that_lands_while_the_tick_watches_is_registered_at_once(seeded):
    inbox = seeded.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    content = invoice_json()
    timer = later(0.3, lambda: drop_atomically(inbox, "a.json", content, OLD))
    t0 = time.monotonic()
    result = evaluate(seeded, **watching(seeded))
    elapsed = time.monotonic() - t0
    timer.join()
    assert [rr.run_key for rr in result.run_requests] == [file_intent_id("invoice_matching", content)]
    assert elapsed < LONG  # it did not wait for its budget to run out


def test_a_file_still_being_written_is_taken_only_once_it_has_settled(seeded):
    inbox = seeded.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / "a.json"
    path.write_bytes(invoice_json())  # written in place, just now: its mtime is the last write
    mtime = path.stat().st_mtime_ns / 1e9
    t0 = time.monotonic()
    result = evaluate(seeded, **watching(seeded, settle=0.5))
    assert len(result.run_requests) == 1 and count(seeded, intents) == 1
    assert time.time() - mtime >= 0.5  # never read inside its settle window
    assert time.monotonic() - t0 < LONG


def test_a_file_rewritten_while_it_settles_waits_for_its_last_write(seeded):
    inbox = seeded.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / "a.json"
    path.write_bytes(invoice_json()[:40])  # a writer that is not done yet
    final = invoice_json()
    last_write: list[float] = []

    def finish() -> None:
        path.write_bytes(final)
        last_write.append(path.stat().st_mtime_ns / 1e9)

    timer = later(0.3, finish)
    result = evaluate(seeded, **watching(seeded, settle=0.8))
    timer.join()
    assert [rr.run_key for rr in result.run_requests] == [file_intent_id("invoice_matching", final)]
    assert time.time() - last_write[0] >= 0.8


def test_a_watch_with_nothing_new_skips_when_its_budget_is_spent(seeded, drop):
    drop("a.json", invoice_json())
    assert len(evaluate(seeded).run_requests) == 1  # registered: known from now on
    t0 = time.monotonic()
    again = evaluate(seeded, **watching(seeded, watch=0.3))
    assert again.skip_message.startswith("no new files")
    assert time.monotonic() - t0 >= 0.3


def test_a_kill_switch_engaged_while_the_tick_watches_stops_the_launch(seeded):
    inbox = seeded.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)

    def incident() -> None:
        controls.set_kill_switch(seeded.db, on=True, actor="oncall", workflow="invoice_matching",
                                 reason="vendor bank data incident")
        drop_atomically(inbox, "a.json", invoice_json(), OLD)

    timer = later(0.3, incident)
    result = evaluate(seeded, **watching(seeded))
    timer.join()
    assert "vendor bank data incident" in (result.skip_message or "")
    assert count(seeded, intents) == 0  # the file was not consumed: the release's tick takes it
