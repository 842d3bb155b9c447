"""Recorded LLM exchanges: the digest that names a request, and the raw response to serve again for it.

A request is named by the sha256 of its canonical JSON: the model, the messages and the response schema
as instructor's TOOLS mode sends it (the function's name, description and parameters). The prompts hold
no run ids, clocks or paths, so the same intent on the same records gives the same digest on any
machine; `agent-pipelines llm-server` answers a request by its digest from a state folder's `llm_calls`
or from a recording file (JSONL, one `Recorded` per line), and refuses any request it has no answer for.

The raw response is the assistant message (its tool call's arguments parsed when they are JSON, so the
policy pack's field redaction reaches them) and the usage the provider reported for it. The offline
proposer has no raw response: its proposal is stored as the tool call a model should have returned,
with no usage, so an offline run is itself a recording."""

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.tables import llm_calls


class Recorded(BaseModel, frozen=True):
    """One line of a recording file: the response served for the request with this digest."""

    digest: str
    model: str
    workflow: str
    prompt_version: str
    message: dict[str, Any]  # the assistant message, as stored in llm_calls.response
    # As reported with the response (instructor adds the usage of re-asks into the last one); None:
    # recorded offline, and the server estimates it from the texts.
    usage: dict[str, int] | None = None


@functools.lru_cache(maxsize=64)
def _tool_schema(response_model: type[BaseModel]) -> str:
    # instructor's OpenAI function schema (instructor/v2/providers/openai/schema.py), rebuilt here so the
    # offline path never imports instructor and openai (seconds of CPU per process); test_model_path
    # checks both agree for every workflow's proposal model.
    from docstring_parser import parse

    schema = response_model.model_json_schema()
    docstring = parse(response_model.__doc__ or "")
    parameters = {k: v for k, v in schema.items() if k not in ("title", "description")}
    for param in docstring.params:
        if param.arg_name in parameters["properties"] and param.description:
            parameters["properties"][param.arg_name].setdefault("description", param.description)
    parameters["required"] = sorted(schema.get("required", []))
    description = schema.get("description", docstring.short_description or (
        f"Correctly extracted `{response_model.__name__}` with all the required parameters with correct types"))
    return json.dumps({"name": schema["title"], "description": description, "parameters": parameters})


def tool_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    """The function instructor's TOOLS mode offers the model for `response_model`."""
    return json.loads(_tool_schema(response_model))


def request_digest(model: str, messages: Sequence[dict[str, Any]], tool: dict[str, Any]) -> str:
    canonical = {"model": model, "messages": list(messages),
                 "tool": {k: tool.get(k) for k in ("name", "description", "parameters")}}
    # ASCII escapes: a hostile text's lone surrogate still hashes (and the same way on both sides).
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def wire_digest(request: dict[str, Any]) -> str:
    """The digest of a chat-completions request as it arrives over HTTP (the tool it forces)."""
    tools = [t.get("function", {}) for t in request.get("tools") or []]
    forced = (request.get("tool_choice") or {}).get("function", {}).get("name") if isinstance(
        request.get("tool_choice"), dict) else None
    tool = next((t for t in tools if t.get("name") == forced), tools[0] if tools else {})
    return request_digest(str(request.get("model", "")), request.get("messages") or [], tool)


def tool_call_message(name: str, arguments: Any, call_id: str = "call_0") -> dict[str, Any]:
    """An assistant message that calls `name` with `arguments` (a JSON value, or raw text)."""
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


def raw_response(completion: Any) -> dict[str, Any] | None:
    """The assistant message and usage of an openai ChatCompletion, as stored in llm_calls.response."""
    choices = getattr(completion, "choices", None)
    if not choices:
        return None
    msg = choices[0].message
    calls = [(c.id, c.function.name, _parsed(c.function.arguments)) for c in (msg.tool_calls or [])]
    message = {"role": "assistant", "content": msg.content,
               "tool_calls": [tool_call_message(n, a, i)["tool_calls"][0] for i, n, a in calls]}
    usage = getattr(completion, "usage", None)
    return {"message": message, "usage": usage and {"prompt_tokens": int(usage.prompt_tokens or 0),
                                                    "completion_tokens": int(usage.completion_tokens or 0)}}


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        return arguments  # not JSON: kept as the model wrote it (it failed validation anyway)


def from_database(db: Database) -> list[Recorded]:
    """Every successful call's response by request digest; the latest wins when a digest repeats."""
    with db.connect() as conn:
        rows = conn.execute(select(llm_calls.c.request_digest, llm_calls.c.model, llm_calls.c.workflow,
                                   llm_calls.c.prompt_version, llm_calls.c.response)
                            .where(llm_calls.c.request_digest.is_not(None), llm_calls.c.response.is_not(None),
                                   llm_calls.c.error.is_(None))
                            .order_by(llm_calls.c.id)).all()
    latest = {r.request_digest: Recorded(digest=r.request_digest, model=r.model, workflow=r.workflow,
                                         prompt_version=r.prompt_version, message=r.response["message"],
                                         usage=r.response.get("usage")) for r in rows}
    return sorted(latest.values(), key=lambda e: e.digest)


def load(path: Path) -> list[Recorded]:
    return [Recorded.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def write(entries: Iterable[Recorded], path: Path) -> int:
    """One JSON object per line, sorted by digest, so a re-export of the same runs is byte-identical."""
    lines = [json.dumps(e.model_dump(), sort_keys=True)
             for e in sorted(entries, key=lambda e: e.digest)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)
