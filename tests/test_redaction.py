"""Redaction: secrets and PII are masked; digests, ids, numbers and ordinary fields are kept."""

import base64
import json
import subprocess
import sys

import pytest

from agent_pipelines.framework.redaction import LABELS, SECRET_KEYS, redact, redact_text


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# Token-shaped test values are assembled at run time so that secret scanners don't flag this file.
JWT = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64({"sub": "1234567890", "name": "Jane"}) \
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4fQk3r9Zq1TnYVwW0b8\nq9Zl0mFh2c7WkB0xg1Zt4sV+3n8A==\n"
       "-----END RSA PRIVATE KEY-----")

# (label, text, the part that must disappear)
POSITIVES = [
    ("private_key", f"key material:\n{PEM}\nend of file", "MIIEowIBAAKCAQEAx4fQk3r9Zq1TnYVwW0b8"),
    ("private_key", "truncated: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
     "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
    ("private_key", "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n",  # JSON-escaped
     "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("aws_key", "aws_access_key_id " + "AKIA" + "IOSFODNN7EXAMPLE", "AKIA" + "IOSFODNN7EXAMPLE"),
    ("aws_key", "aws_secret_access_key = '" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY'",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"),
    ("azure_key", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=" + "Zm9v" * 22 + ";EndpointSuffix=x",
     "Zm9v" * 22),
    ("url_password", "dsn postgresql://svc:hunter2@db.internal:5432/erp", "hunter2"),
    ("url_password", "GET https://admin:s3cr3tP4ss@example.com/path?q=1", "s3cr3tP4ss"),
    ("github_token", "token gh" + "p_" + "A1b2C3d4" * 4 + "E5f6", "A1b2C3d4" * 4),
    ("gitlab_token", "use glp" + "at-" + "x1Y2z3W4v5U6t7S8r9Q0" + " to clone", "x1Y2z3W4v5U6t7S8r9Q0"),
    ("jwt", f"id_token {JWT} issued", JWT.split(".")[1]),
    ("jwt", f"Authorization: Bearer {JWT}", JWT.split(".")[2]),
    ("slack_token", "slack xo" + "xb-123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx",
     "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("stripe_key", "stripe sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    ("twilio_key", "sid A" + "C" + "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"),
    ("sendgrid_key", "S" + "G." + "ngeVfQFYQlKU0ufo8x5d1A" + "." + "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
     "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr"),
    ("npm_token", "//registry.npmjs.org/:_authToken=np" + "m_" + "aBcDeF0123456789aBcDeF0123456789abcd",
     "aBcDeF0123456789aBcDeF0123456789abcd"),
    ("pypi_token", "pyp" + "i-AgEIcHlwaS5vcmc" + "CJDZmE4MzQ2" * 7, "CJDZmE4MzQ2" * 7),
    ("api_key", "openai s" + "k-" + "a1B2c3D4e5F6g7H8i9J0" + "T3Blbk" + "FJ" + "k1L2m3N4o5P6q7R8s9T0", "T3BlbkFJ"),
    ("api_key", "call me with s" + "k-live-abcdefghijklmnop1234 please", "abcdefghijklmnop1234"),
    ("api_key", "publishable p" + "k-test_51HxYzAbCdEfGhIjKl", "51HxYzAbCdEfGhIjKl"),
    ("discord_token", "bot " + "MTk4NjIyNDgzNDcxOTI1MjQ4" + ".Cl2FMQ." + "ZnCjm1XVW7vRze4b7Cq4se7kKWs",
     "ZnCjm1XVW7vRze4b7Cq4se7kKWs"),
    ("mailchimp_key", "mc " + "0123456789abcdef0123456789abcdef" + "-us12", "0123456789abcdef0123456789abcdef"),
    ("square_token", "sq0" + "csp-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
     "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"),
    ("ibm_key", 'ibm_cloud_iam_api_key = "' + "a1B2c3D4e5" * 4 + 'x_Y-"', "a1B2c3D4e5" * 4),
    ("softlayer_key", "softlayer_api_key: " + "abcdef0123456789" * 4, "abcdef0123456789" * 4),
    ("cloudant_key", "cloudant_password: " + "0123456789abcdef" * 4, "0123456789abcdef" * 4),
    ("artifactory_token", "artifactory AK" + "Cp8jQ4Xz7Lm2Nv9Rt end", "Cp8jQ4Xz7Lm2Nv9Rt"),
    ("telegram_token", "bot 123456789:" + "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"),
    ("keyword_secret", 'password = "hunter2"', "hunter2"),
    ("keyword_secret", "api_key: abc123def456", "abc123def456"),
    ("keyword_secret", '{"db_password": "correct-horse", "user": "svc"}', "correct-horse"),
    ("keyword_secret", "client_secret=Zx8vQ2wE9rT", "Zx8vQ2wE9rT"),
    ("keyword_secret", "redirect?access_token=ya29a0ARrdaM123456&state=1", "ya29a0ARrdaM123456"),
    ("bearer", "Authorization: Bearer abcdef0123456789xyz", "abcdef0123456789xyz"),
    ("email", "Contact john.doe+ap@example.co.uk about it.", "john.doe+ap@example.co.uk"),
    ("email", "from: Jane <jane_smith@acme-corp.com>", "jane_smith@acme-corp.com"),
    ("phone", "call +44 20 7946 0958 today", "7946 0958"),
    ("phone", "US office +1 415-555-0132.", "555-0132"),
    ("phone", "desk (415) 555-0132 ext", "555-0132"),
    ("phone", "mobile 415.555.0132", "415.555.0132"),
    ("phone", "Berlin +49 30 901820", "901820"),
    ("phone", "tel: 4155550132", "4155550132"),
    ("phone", "call me on 14155550132 tonight", "14155550132"),
    ("card", "card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("card", "card 5500-0000-0000-0004", "5500-0000-0000-0004"),
    ("card", "pan 4012888888881881", "4012888888881881"),
    ("card", "amex 3782 822463 10005", "3782 822463 10005"),
    ("iban", "pay GB33BUKB20201555555555 now", "GB33BUKB20201555555555"),
    ("iban", "IBAN: GB82 WEST 1234 5698 7654 32", "5698 7654"),
    ("iban", "to DE89 3704 0044 0532 0130 00 NOW please", "0532 0130"),
    ("ssn", "employee SSN: 536-90-4399, start Monday", "536-90-4399"),
    ("ssn", "social security number 536 90 4399", "536 90 4399"),
    ("ssn", "ssn#536904399", "536904399"),
]

NEGATIVES = [
    "invalid SSN 078-05-1120 (the Woolworth card) and 000-12-3456",  # stdnum: not valid SSNs
    "order 536904399 shipped",  # nine bare digits without SSN wording
    "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",  # sha256
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "3f2a9c01d4e5b6a7",  # 16-hex id
    "3f2a9c01d4e5b6a7c8d9",  # 20-hex id
    "A3F2A9C01D4E5B6A7C8D9E0F",
    "inv-3f2a9c01d4e5b6a7",
    "apr-a6e38a63a7f580154613",
    "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",  # Dagster run id
    "00000000-0000-0000-0000-000000001234",
    "2026-11-22T20:28:01+00:00",
    "2026-11-22",
    "2026-11-22 20:28",
    "between 2026-11-22 2026-11-23 and 2026-11-24",
    "PO-2024-0012",
    "INV-10023",
    "1234567.89",
    "2500000",
    "36,000.00",
    "10000",
    "1234567890123.45",
    "43872648.85",  # a decimal amount, not 438-726-4885
    "invoice 4387264885 and order 2125550199",  # unformatted 10-digit ids, no phone word before them
    "amount_cents: 4387264885",
    "USD EUR GBP CHF",
    "token_count",
    "prompt_tokens: 400, completion_tokens: 60, max_tokens=4096",
    "12.5%",
    "TCK-000123",
    "2026.11.1",
    "100000000",
    "4111 1111 1111 1112",  # Luhn-invalid
    "4111111111111112",
    "1732307281003",  # epoch milliseconds (Luhn-valid, but no card network starts with 1)
    "GB34BUKB20201555555555",  # bad IBAN checksum
    "GB82 WEST 1234 5698 7654 33",
    "ceo@[93.184.216.34]",  # an IPv4 literal is not a phone number
    "hosts 10.120.200.134 and 192.168.100.200",
    "Bearer of bad news",
    "The key point: totals match",
    "Key findings: the vendor is approved",
    "password policy requires rotation",
    "gpt-4o-mini",
    "extract@3",
    "see https://example.com/docs/a/b?x=1",
    "run 9b1c3f0e-0a5e-4f5c-9d3e-1f2a3b4c5d6e started at 2026-11-22 20:28:01 for PO-2024-0012",
    ("Invoice INV-10023 dated 2026-11-22 for PO-2024-0012 (ref 100000000): 40 units at 900.00 EUR, total "
     "36,000.00 EUR, budget 2500000, ticket TCK-000123, catalogue 2026.11.1, VAT 19%."),
]


@pytest.mark.parametrize("label, text, secret", POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_positive_is_masked_with_its_label(label, text, secret):
    out = redact_text(text)
    assert f"[REDACTED:{label}]" in out, out
    assert secret not in out
    assert redact_text(out) == out  # idempotent


@pytest.mark.parametrize("text", NEGATIVES)
def test_negative_is_kept(text):
    assert redact_text(text) == text
    assert redact({"value": text, "nested": [text]}) == {"value": text, "nested": [text]}


def test_every_label_is_covered_by_a_positive():
    assert {label for label, _, _ in POSITIVES} == set(LABELS)


def test_url_password_keeps_user_and_host():
    assert redact_text("postgresql://svc:hunter2@db.internal/erp") == \
        "postgresql://svc:[REDACTED:url_password]@db.internal/erp"


def test_full_pem_block_is_one_mask():
    assert redact_text(f"a\n{PEM}\nb") == "a\n[REDACTED:private_key]\nb"


def test_several_findings_in_one_text():
    out = redact_text("Mail ops@acme.example or call +1 415-555-0132; IBAN DE89 3704 0044 0532 0130 00; "
                      "card 4111 1111 1111 1111; invoice INV-10023 total 36,000.00 on 2026-11-22.")
    assert out == ("Mail [REDACTED:email] or call [REDACTED:phone]; IBAN [REDACTED:iban]; "
                   "card [REDACTED:card]; invoice INV-10023 total 36,000.00 on 2026-11-22.")


def test_secret_keys_and_patterns_are_masked_but_counters_are_not():
    out = redact({"api_key": "abc", "access_token": "xyz", "prompt_tokens": 400, "completion_tokens": 60,
                  "note": "call me with sk-live-abcdefghijklmnop1234 at postgresql://u:hunter2@db/x",
                  "iban": "pay GB33BUKB20201555555555 now", "nested": [{"password": "p"}]})
    assert out["api_key"] == out["access_token"] == "[REDACTED:secret]"
    assert (out["prompt_tokens"], out["completion_tokens"]) == (400, 60)
    assert "sk-live" not in out["note"] and "hunter2" not in out["note"]
    assert "GB33BUKB20201555555555" not in out["iban"]
    assert out["nested"][0]["password"] == "[REDACTED:secret]"


@pytest.mark.parametrize("key", ["db_password", "DB_PASSWORD", "client-secret", "refresh_token", "apiKey", "api-key",
                                 "Authorization", "aws_credentials", "passwd"])
def test_secret_key_names_mask_string_values(key):
    assert SECRET_KEYS.search(key)
    assert redact({key: "x"}) == {key: "[REDACTED:secret]"}


@pytest.mark.parametrize("key", ["prompt_tokens", "completion_tokens", "token_count", "secretary", "keys",
                                 "password_policy"])
def test_ordinary_key_names_are_not_secret(key):
    assert not SECRET_KEYS.search(key)
    assert redact({key: "plain"}) == {key: "plain"}


def test_secret_key_keeps_non_string_and_empty_values():
    assert redact({"token": 12, "password": "", "secret": None}) == {"token": 12, "password": "", "secret": None}


def test_fields_mask_values_of_any_type_case_insensitively_at_any_depth():
    value = {"Personal_Email": "jane@example.com", "home_address": {"street": "1 Main St", "zip": "94105"},
             "vendor": "Acme", "lines": [{"HOME_ADDRESS": ["a", "b"], "qty": 3}, {"personal_email": 7}],
             "amount": 1234567.89}
    out = redact(value, fields=("personal_email", "Home_Address"))
    assert out == {"Personal_Email": "[REDACTED:field]", "home_address": "[REDACTED:field]", "vendor": "Acme",
                   "lines": [{"HOME_ADDRESS": "[REDACTED:field]", "qty": 3}, {"personal_email": "[REDACTED:field]"}],
                   "amount": 1234567.89}
    assert value["home_address"] == {"street": "1 Main St", "zip": "94105"}  # the input is not modified


def test_fields_match_whole_key_names_only():
    assert redact({"email_count": 3, "email": "x"}, fields=["email"]) == {"email_count": 3, "email": "[REDACTED:field]"}
    assert redact({"email": "x", "e": "y"}, fields="email") == {"email": "[REDACTED:field]", "e": "y"}  # one name


def test_nested_structures_and_scalars():
    value = {"a": [{"b": ("call +1 415-555-0132", 5, None, True)}], "c": {"d": {"e": "mail j@x.example"}}, 7: 1.5}
    assert redact(value) == {"a": [{"b": ["call [REDACTED:phone]", 5, None, True]}],
                             "c": {"d": {"e": "mail [REDACTED:email]"}}, 7: 1.5}
    for scalar in (0, 12.5, None, True, b"bytes"):
        assert redact(scalar) == scalar
    assert redact("") == "" and redact_text("") == ""


def test_redacting_twice_changes_nothing():
    row = {"text": " ; ".join(text for _, text, _ in POSITIVES), "password": "p", "email": "j@x.example",
           "rows": [text for _, text, _ in POSITIVES], "kept": NEGATIVES}
    once = redact(row, fields=["email"])
    assert redact(once, fields=["email"]) == once
    assert once["kept"] == NEGATIVES


def test_clean_trace_row_is_returned_unchanged():
    row = {"run_id": "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9", "digest": NEGATIVES[0], "at": "2026-11-22T20:28:01+00:00",
           "params": {"invoice_number": "INV-10023", "po_number": "PO-2024-0012", "amount": "1234567.89"},
           "result": {"total": 2500000, "currency": "EUR"}, "prompt_tokens": 1834, "text": NEGATIVES[-1]}
    assert redact(row) == row


def test_import_is_cheap():
    code = ("import sys; import agent_pipelines.framework.redaction as r; "
            "assert not {'detect_secrets', 'phonenumbers', 'stdnum'} & set(sys.modules), sorted(sys.modules); "
            "r.redact_text('short clean words'); assert 'detect_secrets' not in sys.modules; "
            "r.redact_text('password: hunter2 +1 415-555-0132'); assert 'detect_secrets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_offsets_survive_unicode_that_lowercases_longer():
    # "İ".lower() is two characters: the detectors must still mask the right span.
    assert redact_text("İİİ password: hunter2 İ") == "İİİ password: [REDACTED:keyword_secret]"
    assert redact_text("İstanbul access_token=ya29a0ARrdaM123456 ok") == \
        "İstanbul access_token=[REDACTED:keyword_secret] ok"
