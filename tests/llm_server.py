"""A local OpenAI-compatible server for tests: serves scripted chat completions on 127.0.0.1 and
records every request. Completions are built as tool calls (instructor's TOOLS mode) for whatever
function the request forces, so the real instructor + openai client path runs unmodified."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLM:
    def __init__(self, replies: list[dict[str, Any] | str]) -> None:
        self.replies = list(replies)  # dict -> tool-call arguments; str -> raw arguments text
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

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
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            payload = json.dumps(script.completion(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
