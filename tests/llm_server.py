"""A local OpenAI-compatible server for tests: serves scripted chat completions on 127.0.0.1 and
records every request. Completions are built as tool calls (instructor's TOOLS mode) for whatever
function the request forces, so the real instructor + openai client path runs unmodified."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_pipelines.bench_llm import completion, forced_tool
from agent_pipelines.bench_llm import serve as serve_completions
from agent_pipelines.framework.recording import tool_call_message


class ScriptedLLM:
    def __init__(self, replies: list[dict[str, Any] | str]) -> None:
        self.replies = list(replies)  # dict -> tool-call arguments; str -> raw arguments text
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    def respond(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return self.completion(request)

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        n = len(self.requests)
        reply = self.replies[min(n - 1, len(self.replies) - 1)]
        return completion(request, tool_call_message(forced_tool(request), reply, f"call_{n}"), (400, 60), n)


@contextmanager
def serve(script: ScriptedLLM) -> Iterator[ScriptedLLM]:
    """The scripted completions on agent_pipelines.bench_llm's local OpenAI-compatible endpoint."""
    with serve_completions(script):
        yield script
