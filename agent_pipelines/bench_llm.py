"""The local OpenAI-compatible endpoint (`serve`), one server for three uses: the LLM-bound benchmark
(`LatencyLLM`: a fixed latency, at most `capacity` requests in flight, the rest queue as at a provider;
it proposes the match of a bench invoice, agent_pipelines.bench: every invoice bills its own PO in
full), the tests' scripted replies (tests/llm_server.py), and `agent-pipelines llm-server`
(`RecordedLLM`: recorded responses by request digest, framework/recording.py). Completions are tool
calls, the shape instructor's TOOLS mode expects, so the real instructor + openai client path runs
unmodified against it."""

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from agent_pipelines.framework.llm import approx_tokens
from agent_pipelines.framework.recording import Recorded, tool_call_message, wire_digest

PO = re.compile(r"PO-N\d{6}")


class CompletionError(Exception):
    """Answered as an OpenAI-style error body with this HTTP status (never a made-up completion)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def forced_tool(request: dict[str, Any]) -> str:
    """The function the request forces (instructor's TOOLS mode), else the first one offered."""
    choice = request.get("tool_choice")
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    tools = request.get("tools") or []
    if not (name or tools):
        raise CompletionError(422, "no_tool", "the request offers no tool: this server answers TOOLS-mode "
                                              "requests (AGENT_PIPELINES_LLM_MODE=tools)")
    return name or tools[0]["function"]["name"]


def completion(request: dict[str, Any], message: dict[str, Any], usage: tuple[int, int], n: int = 0) -> dict[str, Any]:
    """A chat.completion answering `request` with `message`; tool-call arguments that are JSON values
    are sent as the JSON text the API carries."""
    calls = [{**c, "function": {**c["function"], "arguments": a if isinstance(a := c["function"]["arguments"], str)
                                else json.dumps(a)}} for c in message.get("tool_calls") or []]
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_800_000_000, "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls" if calls else "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": message.get("content"), "refusal": None,
                                     **({"tool_calls": calls} if calls else {})}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


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
        return completion(request, tool_call_message(forced_tool(request), args), (400, 60))

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


class RecordedLLM(LatencyLLM):
    """Answers each request with the response recorded for its digest (framework/recording.py), after
    the fixed latency; a request with no recording is refused with 404 naming its digest."""

    def __init__(self, entries: list[Recorded], latency_s: float = 0.0, capacity: int = 64) -> None:
        super().__init__(latency_s=latency_s, capacity=capacity)
        self.entries = {e.digest: e for e in entries}
        self.unknown: list[str] = []  # digests asked for and refused

    def models(self) -> list[str]:
        return sorted({e.model for e in self.entries.values()})

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        forced_tool(request)  # a request that is not TOOLS mode is refused before it is looked up
        digest = wire_digest(request)
        entry = self.entries.get(digest)
        if entry is None:
            with self._lock:
                self.unknown.append(digest)
            raise CompletionError(404, "recording_not_found", (
                f"no recorded response for request digest {digest} (model {request.get('model')!r}; this "
                f"recording has {len(self.entries)} responses for models {self.models()}): the prompt, the "
                f"response schema or the model name differ from the recorded run"))
        if entry.usage:
            usage = (entry.usage["prompt_tokens"], entry.usage["completion_tokens"])
        else:  # recorded offline: no provider counted tokens, so they are estimated from the texts
            usage = (sum(approx_tokens(str(m.get("content") or "")) for m in request["messages"]),
                     approx_tokens(json.dumps(entry.message.get("tool_calls"))))
        return completion(request, entry.message, usage, self.served)


class Completions(Protocol):
    base_url: str

    def respond(self, request: dict[str, Any]) -> dict[str, Any]: ...


@contextmanager
def serve(llm: Completions, host: str = "127.0.0.1", port: int = 0) -> Iterator[Any]:
    """An OpenAI-compatible `/v1/chat/completions` (and `/v1/models`) on `host:port` (port 0: a free
    one; `llm.base_url` is set), answered by `llm.respond`, one thread per request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections
        # Headers and body go out as two writes: with Nagle's algorithm on, the body waits for the
        # client's delayed ACK of the headers, ~40 ms added to every answer on top of the latency L.
        disable_nagle_algorithm = True

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, exc: CompletionError) -> None:
            self._send(exc.status, {"error": {"message": exc.message, "type": "invalid_request_error",
                                              "param": None, "code": exc.code}})

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                models = getattr(llm, "models", list)()
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 1_800_000_000, "owned_by": "recording"} for m in models]})
            else:
                self._error(CompletionError(404, "not_found", f"no such endpoint: GET {self.path}"))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.path.endswith("/chat/completions"):
                self._error(CompletionError(404, "not_found", f"no such endpoint: POST {self.path}"))
                return
            try:
                self._send(200, llm.respond(body))
            except CompletionError as exc:
                self._error(exc)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    llm.base_url = f"http://{host}:{server.server_address[1]}/v1"
    try:
        yield llm
    finally:
        server.shutdown()
        server.server_close()
