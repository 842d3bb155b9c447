"""The LLM seam: one typed proposal per call, via instructor, or the workflow's offline proposer.

The provider is configuration: `offline` (the deterministic proposer; no key, no network), `openai`
(any OpenAI-compatible base_url: OpenAI, vLLM, Ollama, llama.cpp), or any instructor.from_provider
string such as `anthropic/claude-sonnet-4-5`. Temperature 0; pydantic validation errors re-ask up to
`max_reasks`; usage and cost are returned for the trace, with the request's digest and the raw response
(framework/recording.py) so the call can be served again."""

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from agent_pipelines.framework.ratelimit import in_flight_for, limiter_for
from agent_pipelines.framework.recording import (
    raw_response,
    request_digest,
    tool_call_message,
    tool_schema,
)

T = TypeVar("T", bound=BaseModel)

# USD per million tokens (input, output). Unknown models cost 0 and say so in the trace.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


class LLMConfig(BaseModel, frozen=True):
    provider: str = "offline"
    model: str = "offline-rules"
    base_url: str | None = None
    api_key: str | None = None
    mode: Literal["tools", "json", "json_schema", "md_json"] = "tools"
    max_reasks: int = 2
    timeout_s: float = 60.0
    # Calls in flight to the endpoint, per process. A batch step works on twice as many intents at once,
    # so one intent's bookkeeping overlaps the others' calls and the endpoint's slots stay busy; the
    # per-minute limits below hold whatever the concurrency.
    concurrency: int = 8
    requests_per_min: float | None = None
    tokens_per_min: float | None = None


class LLMUsage(BaseModel, frozen=True):
    provider: str
    model: str
    prompt_version: str
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    # The recording of the call: the digest of the first request and the last raw response (None when
    # the provider returned none), both traced in llm_calls.
    request_digest: str | None = None
    response: dict[str, Any] | None = None


class ProposalFailed(Exception):
    def __init__(self, message: str, usage: LLMUsage) -> None:
        super().__init__(message)
        self.usage = usage


def approx_tokens(text: str) -> int:
    """~4 characters a token: estimates before the provider's count (rate limits, recorded replies)."""
    return len(text) // 4


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    p_in, p_out = PRICES.get(model, (0.0, 0.0))
    return round((prompt_tokens * p_in + completion_tokens * p_out) / 1_000_000, 8)


class Proposer:
    """Built once per run from LLMConfig; `http_client` lets tests and replay serve completions."""

    def __init__(self, config: LLMConfig, http_client: Any | None = None) -> None:
        self.config = config
        self._http_client = http_client
        self._client: Any | None = None

    @property
    def is_offline(self) -> bool:
        return self.config.provider == "offline"

    @property
    def client_modules(self) -> tuple[str, ...]:
        """What the first call imports (_instructor), for preload.in_background: none offline. Both
        packages import their parts when first asked for: openai's API resources (~0.5 s, at the
        client's first `.chat`) and instructor's client factory."""
        if self.is_offline:
            return ()
        return (("openai.resources", "instructor:from_openai") if self.config.provider == "openai"
                else ("instructor:from_provider",))

    @property
    def model_name(self) -> str:
        return "offline-rules" if self.is_offline else self.config.model

    def _instructor(self) -> Any:
        if self._client is None:
            import instructor  # imported on first use: the offline path never pays for openai

            mode = {"tools": instructor.Mode.TOOLS, "json": instructor.Mode.JSON,
                    "json_schema": instructor.Mode.JSON_SCHEMA, "md_json": instructor.Mode.MD_JSON}[self.config.mode]
            if self.config.provider == "openai":
                import openai

                oai = openai.OpenAI(api_key=self.config.api_key or "unused", base_url=self.config.base_url,
                                    timeout=self.config.timeout_s, max_retries=0, http_client=self._http_client)
                self._client = instructor.from_openai(oai, mode=mode)
            else:
                kwargs: dict[str, Any] = {"mode": mode}
                if self.config.base_url:
                    kwargs["base_url"] = self.config.base_url
                if self.config.api_key:
                    kwargs["api_key"] = self.config.api_key
                self._client = instructor.from_provider(self.config.provider, **kwargs)
        return self._client

    def propose(self, *, response_model: type[T], messages: Callable[[], Sequence[dict[str, str]]],
                offline: Callable[[], T], prompt_version: str) -> tuple[T, LLMUsage]:
        tool = tool_schema(response_model)
        sent = list(messages())
        digest = request_digest(self.model_name, sent, tool)
        if self.is_offline:
            # No model answered: record the proposal as the tool call a model should have returned, so
            # this run can be served to the real client path (`agent-pipelines llm-server`).
            proposal = offline()
            response = {"message": tool_call_message(tool["name"], proposal.model_dump(mode="json")), "usage": None}
            return proposal, LLMUsage(provider="offline", model=self.model_name, prompt_version=prompt_version,
                                      attempts=1, request_digest=digest, response=response)
        client = self._instructor()
        attempts = 0
        last: list[Any] = [None]  # the last raw completion, kept by instructor's response hook
        limiter = limiter_for(self.config.provider, self.config.base_url or "", self.config.requests_per_min,
                              self.config.tokens_per_min)
        # ~4 characters a token, plus room for the answer: settled with the real usage afterwards.
        estimate = sum(approx_tokens(m.get("content", "")) for m in sent) + 256
        if limiter is not None:
            limiter.acquire(estimate)
        used = estimate

        def count(*_a: Any, **_k: Any) -> None:
            nonlocal attempts
            attempts += 1

        def keep(completion: Any) -> None:
            last[0] = completion

        client.on("completion:kwargs", count)
        client.on("completion:response", keep)
        try:
            with in_flight_for(self.config.provider, self.config.base_url or "", self.config.concurrency):
                result, completion = client.create_with_completion(
                    model=self.config.model, response_model=response_model, messages=sent,
                    max_retries=self.config.max_reasks, temperature=0)
            usage = self._usage(getattr(completion, "usage", None), prompt_version, attempts, digest, completion)
            used = usage.prompt_tokens + usage.completion_tokens or estimate
        except Exception as exc:
            failed = self._usage(getattr(exc, "total_usage", None), prompt_version, attempts, digest, last[0])
            used = failed.prompt_tokens + failed.completion_tokens or estimate
            raise ProposalFailed(f"{type(exc).__name__}: {exc}", failed) from exc
        finally:
            client.off("completion:kwargs", count)
            client.off("completion:response", keep)
            if limiter is not None:
                limiter.settle(estimate, used)
        # instructor returns an instance of its own wrapper class; hand back the workflow's model
        proposal = response_model.model_validate(result.model_dump())
        return proposal, usage

    def _usage(self, usage: Any, prompt_version: str, attempts: int, digest: str, completion: Any) -> LLMUsage:
        p = int(getattr(usage, "prompt_tokens", 0) or 0)
        c = int(getattr(usage, "completion_tokens", 0) or 0)
        return LLMUsage(provider=self.config.provider, model=self.config.model, prompt_version=prompt_version,
                        attempts=attempts, prompt_tokens=p, completion_tokens=c,
                        cost_usd=cost_usd(self.config.model, p, c), request_digest=digest,
                        response=raw_response(completion))
