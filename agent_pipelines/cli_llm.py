"""`agent-pipelines llm-server` and `agent-pipelines recording export`: the model path without a provider.

The server answers OpenAI chat completions from recorded responses (framework/recording.py): the
committed demo recording by default, another recording file, or a state folder's `llm_calls`. Point
the openai provider at it (AGENT_PIPELINES_LLM_PROVIDER=openai, AGENT_PIPELINES_LLM_BASE_URL=
http://127.0.0.1:8765/v1) and the runs go through the real instructor + openai client."""

import threading
from pathlib import Path
from typing import Annotated

import typer

from agent_pipelines.cli_common import emit as _emit
from agent_pipelines.framework import recording

# The offline demo's proposals, recorded by `agent-pipelines recording export` (README, "Run the demo
# through a model"); test_model_path checks that a fresh offline demo exports exactly this.
DEMO_RECORDING = Path(__file__).resolve().parent / "recordings" / "demo.jsonl"

recording_app = typer.Typer(no_args_is_help=True, help="Recordings of LLM responses (the llm-server's answers).")


def from_state(state_dir: Path | None) -> tuple[list[recording.Recorded], str]:
    """A state folder's recorded responses (its llm_calls) and where they came from."""
    from agent_pipelines.project import Project

    project = Project.open(state_dir)
    return recording.from_database(project.db), f"llm_calls of {project.settings.state_dir}"


@recording_app.command("export")
def export(state_dir: Annotated[Path | None, typer.Option("--state-dir", help="state folder (default .agent_pipelines)")] = None,
           out: Annotated[Path, typer.Option("--out", help="recording file (JSONL) to write")] = DEMO_RECORDING,
           as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """Write every successful LLM call of a state folder as a recording: request digest -> response."""
    entries, source = from_state(state_dir)
    n = recording.write(entries, out)
    by_workflow: dict[str, int] = {}
    for e in entries:
        by_workflow[e.workflow] = by_workflow.get(e.workflow, 0) + 1
    if as_json:
        _emit({"responses": n, "by_workflow": by_workflow, "source": source, "out": str(out)})
    else:
        typer.echo(f"recorded {n} responses from {source} to {out}: {by_workflow}")


def register(app: typer.Typer) -> None:
    app.add_typer(recording_app, name="recording")

    @app.command("llm-server")
    def llm_server(port: Annotated[int, typer.Option("--port", help="0: any free port")] = 8765,
                   host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
                   latency_ms: Annotated[float, typer.Option("--latency-ms", help="fixed latency per answer")] = 0,
                   from_state_dir: Annotated[Path | None, typer.Option(
                       "--from-state-dir", help="serve the llm_calls of this state folder (a previous run)")] = None,
                   recording_file: Annotated[Path | None, typer.Option(
                       "--recording", help="serve this recording file (default: the committed demo recording)")] = None,
                   as_json: Annotated[bool, typer.Option("--json", help="print the endpoint as one JSON object")] = False,
                   ) -> None:
        """Serve an OpenAI-compatible /v1/chat/completions from recorded responses, until interrupted.
        A request with no recorded response gets HTTP 404 naming its digest, never an invented answer."""
        from agent_pipelines.bench_llm import RecordedLLM, serve

        if from_state_dir is not None and recording_file is not None:
            raise typer.BadParameter("give --from-state-dir or --recording, not both")
        if from_state_dir is not None:
            entries, source = from_state(from_state_dir)
        else:
            path = recording_file or DEMO_RECORDING
            entries, source = recording.load(path), str(path)
        llm = RecordedLLM(entries, latency_s=latency_ms / 1000)
        with serve(llm, host=host, port=port):
            info = {"base_url": llm.base_url, "responses": len(entries), "models": llm.models(), "source": source,
                    "latency_ms": latency_ms}
            if as_json:
                _emit(info)
            else:
                typer.echo(f"llm-server on {llm.base_url}: {len(entries)} recorded responses from {source} "
                           f"(models {llm.models()}, latency {latency_ms:g} ms); Ctrl-C stops it")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
