"""A local OpenAI-compatible endpoint for the LLM-bound benchmark: it answers each chat completion after
a fixed latency, with at most `capacity` requests in flight (the rest queue, as at a provider), and
proposes the match of a bench invoice (agent_pipelines.bench: every invoice bills its own PO in full).
The real instructor + openai client path runs unmodified against it."""

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

PO = re.compile(r"PO-N\d{6}")


@dataclass
class LatencyLLM:
    latency_s: float
    capacity: int
    base_url: str = ""
    served: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.capacity)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(request.get("messages", []))
        po = (PO.findall(text) or [None])[0]
        args = {"po_number": po, "line_matches": [{"invoice_line": 0, "po_line_no": 1},
                                                  {"invoice_line": 1, "po_line_no": 2}],
                "matched_po_amount_cents": 100_000, "variance_cents": 0, "invoice_total_cents": 100_000,
                "pay_amount_cents": None, "rationale": f"{po} is named on the invoice; both lines match it"}
        name = request.get("tool_choice", {}).get("function", {}).get("name") or request["tools"][0]["function"]["name"]
        return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1_800_000_000, "model": request["model"],
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                    "role": "assistant", "content": None, "refusal": None,
                    "tool_calls": [{"id": "call_0", "type": "function",
                                    "function": {"name": name, "arguments": json.dumps(args)}}]}}],
                "usage": {"prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460}}


    def respond(self, request: dict[str, Any]) -> dict[str, Any]:
        """At most `capacity` requests in flight; each waits the fixed latency, then is answered."""
        with self._slots:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(self.latency_s)  # the provider's fixed latency L
            with self._lock:
                self.in_flight -= 1
                self.served += 1
        return self.answer(request)


class Completions(Protocol):
    base_url: str

    def respond(self, request: dict[str, Any]) -> dict[str, Any]: ...


@contextmanager
def serve(llm: Completions) -> Iterator[Any]:
    """An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 (a free port; `llm.base_url` is set),
    answered by `llm.respond`, one thread per request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            payload = json.dumps(llm.respond(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    llm.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield llm
    finally:
        server.shutdown()
        server.server_close()
