"""`agent-pipelines ui` (the README's way to run the daemon and the UI on the CLI's state): stopped by
SIGTERM (a supervisor, `kill`) or by Ctrl-C (SIGINT to its process group), it stops the daemon and the
webserver it started, and they stop their code servers; when the webserver dies on its own, the command
stops the daemon and ends too. No process of it is left running on its own."""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.daemon.harness import BIN, REPO
from tests.support import wait_until


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0]


def descendants(root: int) -> set[int]:
    parents = {int(p.name): s[0] for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        children = {c for c, parent in parents.items() if parent == pid}
        todo.extend(children - found)
        found |= children
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody reaped yet has stopped all the same)."""
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], set[int], Path]]:
    """`agent-pipelines ui` in its own session, once the webserver answers and the daemon and the
    webserver each run their code server; whatever is left of it is killed afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_PIPELINES_", "DAGSTER_"))}
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "agent-pipelines"), "ui", "--state-dir", str(tmp_path / "state"),
                                 "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started: set[int] = set()
    try:
        wait_until("the webserver answers", lambda: urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status
                   == 200, timeout_s=180, every_s=0.5)

        def both_code_servers() -> bool:
            started.update(descendants(proc.pid))
            return sum("grpc" in cmdline(p) or "code-server" in cmdline(p) for p in started if running(p)) >= 2

        wait_until("the daemon's and the webserver's code servers", both_code_servers, timeout_s=180, every_s=0.5)
        names = {cmdline(p) for p in started}
        assert any("dagster-daemon" in n for n in names) and any("dagster-webserver" in n for n in names), names
        yield proc, started, log
    finally:
        for pid in {proc.pid, *started, *descendants(proc.pid)}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _stops_everything(proc: subprocess.Popen[bytes], started: set[int], log: Path) -> int:
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`agent-pipelines ui` still running 90 s later:\n{log.read_text()[-3000:]}") from None
    try:
        wait_until("the daemon, the webserver and their code servers to stop",
                   lambda: not any(running(p) for p in started), timeout_s=60, every_s=0.5)
    except TimeoutError:
        raise AssertionError(f"left running: {({p: cmdline(p) for p in started if running(p)})}") from None
    return code


def test_sigterm_to_the_command_stops_the_daemon_and_the_webserver(ui) -> None:  # type: ignore[no-untyped-def]
    proc, started, log = ui
    os.kill(proc.pid, signal.SIGTERM)  # the command alone, as a supervisor stops it
    assert _stops_everything(proc, started, log) == 128 + signal.SIGTERM


def test_ctrl_c_stops_the_daemon_and_the_webserver(ui) -> None:  # type: ignore[no-untyped-def]
    proc, started, log = ui
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
    assert _stops_everything(proc, started, log) == 130


def test_a_webserver_that_dies_takes_the_daemon_and_the_command_with_it(ui) -> None:  # type: ignore[no-untyped-def]
    proc, started, log = ui
    webserver = next(p for p in started if "dagster-webserver" in cmdline(p) and (_stat(p) or (0,))[0] == proc.pid)
    # Its own code server is left to Dagster: it exits once the dead webserver's heartbeats stop (~45 s).
    orphaned = descendants(webserver)
    os.kill(webserver, signal.SIGKILL)
    assert _stops_everything(proc, started - orphaned, log) == 128 + signal.SIGKILL
