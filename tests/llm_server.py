"""A local OpenAI-compatible server for tests: serves scripted chat completions on 127.0.0.1 and
records every request. Completions are built as tool calls (instructor's TOOLS mode) for whatever
function the request forces, so the real instructor + openai client path runs unmodified."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_pipelines.bench_llm import serve as serve_completions


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
        args = reply if isinstance(reply, str) else json.dumps(reply)
        name = request.get("tool_choice", {}).get("function", {}).get("name") or request["tools"][0]["function"]["name"]
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_800_000_000, "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                "role": "assistant", "content": None, "refusal": None,
                "tool_calls": [{"id": f"call_{n}", "type": "function",
                                "function": {"name": name, "arguments": args}}]}}],
            "usage": {"prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460},
        }


@contextmanager
def serve(script: ScriptedLLM) -> Iterator[ScriptedLLM]:
    """The scripted completions on agent_pipelines.bench_llm's local OpenAI-compatible endpoint."""
    with serve_completions(script):
        yield script
