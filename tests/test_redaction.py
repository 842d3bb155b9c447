"""Redaction: secrets and payment identifiers are masked; numbers and ordinary fields are kept."""

from agent_pipelines.framework.redaction import redact


def test_secret_keys_and_patterns_are_masked_but_counters_are_not():
    out = redact({"api_key": "abc", "access_token": "xyz", "prompt_tokens": 400, "completion_tokens": 60,
                  "note": "call me with sk-live-abcdefghijklmnop1234 at postgresql://u:hunter2@db/x",
                  "iban": "pay GB33BUKB20201555555555 now", "nested": [{"password": "p"}]})
    assert out["api_key"] == out["access_token"] == "[REDACTED:secret]"
    assert (out["prompt_tokens"], out["completion_tokens"]) == (400, 60)
    assert "sk-live" not in out["note"] and "hunter2" not in out["note"]
    assert "GB33BUKB20201555555555" not in out["iban"]
    assert out["nested"][0]["password"] == "[REDACTED:secret]"
