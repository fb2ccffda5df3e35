"""Secret masking and PII redaction: true positives, and near misses that must be left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from deskpilot.config import Settings
from deskpilot.redaction import (
    MASK,
    SecretMasker,
    iban_is_valid,
    mask_secrets,
    preview,
    redact,
    register_settings,
    settings_secrets,
)

# --- PII: what must be redacted ---------------------------------------------------------------

TRUE_POSITIVES = [
    ("mail jane.doe+billing@example.co.uk please", "mail [email] please"),
    ("From: <ops-team@acme-corp.io>", "From: <[email]>"),
    ("UPPER.Case_1@Sub.Example.ORG.", "[email]."),
    ("call +49 30 1234567 today", "call [phone] today"),
    ("call +1 (202) 555-0143.", "call [phone]."),
    ("+44 20 7946 0958", "[phone]"),
    ("tel:+33612345678", "tel:[phone]"),
    ("(555) 123-4567 is my desk", "[phone] is my desk"),
    ("ring 555-123-4567 or 555.123.4567", "ring [phone] or [phone]"),
    ("Festnetz 030 1234567, mobil 0171-123 4567", "Festnetz [phone], mobil [phone]"),
    ("Tel. 089/12345678", "Tel. [phone]"),
    ("IBAN DE89 3704 0044 0532 0130 00 bitte", "IBAN [iban] bitte"),
    ("iban: GB82WEST12345698765432", "iban: [iban]"),
    ("NL91ABNA0417164300", "[iban]"),
    ("FR14 2004 1010 0505 0001 3M02 606", "[iban]"),
    ("lower-case de89370400440532013000 too", "lower-case [iban] too"),
]

NEAR_MISSES = [
    "released on 2024-01-15 at 12:30:45",
    "server 192.168.1.254 and 10.0.0.1",
    "upgrade to v1.2.3 or 10.4.12",
    "order 123456789 and invoice INV-2024-000123",
    "ticket #4567, total 1,234.56 EUR",
    "ISBN 978-3-16-148410-0",
    "card 4111 1111 1111 1111",
    "epoch 1700000000",
    "the @channel mention and user@localhost",
    "a@b.c is not an address",
    "DE89 3704 0044 0532 0130 01",  # IBAN shape, checksum wrong
    "GB82WEST12345698765431",  # one digit off
    "AB12 CDEF GHIJ KLMN",  # IBAN shape, checksum wrong
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "SKU 12-3456-7890-12",
    "dates 01/02/2024 and 01.02.2024",
    "phone extension 4567",
    "Release 2025.11.28-rc1",
]


@pytest.mark.parametrize(("text", "expected"), TRUE_POSITIVES)
def test_pii_true_positives(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_pii_near_misses_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_precision_and_recall_over_the_tables() -> None:
    hits = sum(redact(t) == e for t, e in TRUE_POSITIVES)
    false_alarms = sum(redact(t) != t for t in NEAR_MISSES)
    assert hits == len(TRUE_POSITIVES)
    assert false_alarms == 0


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89370400440532013000", True),
        ("GB82 WEST 1234 5698 7654 32", True),
        ("DE89370400440532013001", False),
        ("XX00", False),
        ("DE89-3704-0044", False),
    ],
)
def test_iban_checksum(iban: str, valid: bool) -> None:
    assert iban_is_valid(iban) is valid


# --- secrets --------------------------------------------------------------------------------

SECRET_SHAPES = [
    ("Authorization: Bearer dpk_AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIj"),
    ("{'authorization': 'Bearer sk-live-123456789abc'}", "sk-live-123456789abc"),
    ("headers X-Slack-Signature=v0=a1b2c3d4e5f6a7b8", "a1b2c3d4e5f6"),
    ("X-Hub-Signature-256: sha256=deadbeefcafebabe", "deadbeefcafebabe"),
    ("key dpk_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA was wrong", "Zm9vYmFyYmF6cXV4"),
    ("slack xoxb-1234567890-0987654321-AbCdEfGhIjKl", "AbCdEfGhIjKl"),
    ("app token xapp-1-A0123-4567-abcdef0123", "abcdef0123"),
    ("GET /hook?token=s3cr3tvalue&x=1", "s3cr3tvalue"),
    ("broker redis://:hunter2pass@redis:6379/0", "hunter2pass"),
    ("postgresql://deskpilot:pa55word@db/deskpilot", "pa55word"),
    ("basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
]


@pytest.mark.parametrize(("text", "secret"), SECRET_SHAPES)
def test_credential_shapes_are_masked(text: str, secret: str) -> None:
    masked = mask_secrets(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "GET /v1/classify 200 in 3.2 ms for tenant acme (request id abc123)",
        "missing API key: send 'Authorization: Bearer <key>'",
        "set DESKPILOT_METRICS_TOKEN and send it as Authorization: Bearer <token>",
        "the Authorization header must be 'Bearer <key>'",
        "GET /hook?token={token}",
        "Authorization: [redacted]",
    ],
)
def test_masking_keeps_ordinary_text_and_placeholders(text: str) -> None:
    assert mask_secrets(text) == text


def test_settings_secret_values_are_found_and_masked(tmp_path: Path) -> None:
    settings = Settings(
        env="test",
        home=tmp_path,
        secret_key=SecretStr("the-app-secret-key-value"),
        webhook_secrets={"acme": SecretStr("whsec-acme-0001"), "acme/jira": SecretStr("jira-shared-secret")},
        connector_secrets={"zendesk": SecretStr("zd-api-token-xyz")},
    )
    found = settings_secrets(settings)
    assert {"the-app-secret-key-value", "whsec-acme-0001", "jira-shared-secret", "zd-api-token-xyz"} <= set(
        found
    )
    register_settings(settings)
    line = (
        "verifying with whsec-acme-0001 then jira-shared-secret, zd-api-token-xyz, the-app-secret-key-value"
    )
    masked = mask_secrets(line)
    for secret in found:
        assert secret not in masked


def test_short_values_are_not_masked_by_value() -> None:
    masker = SecretMasker(["abc", "longer-secret"])
    assert masker.mask("abc and longer-secret") == f"abc and {MASK}"


def test_longest_secret_wins() -> None:
    masker = SecretMasker(["secret1", "secret1-extended"])
    assert masker.mask("x secret1-extended y") == f"x {MASK} y"


# --- previews -------------------------------------------------------------------------------


def test_preview_redacts_only_when_asked(tmp_path: Path) -> None:
    text = "Hi,\n\nplease refund jane@example.com,\tIBAN DE89 3704 0044 0532 0130 00, call +49 30 1234567"
    plain = preview(text, Settings(env="test", home=tmp_path))
    assert "jane@example.com" in plain and "\n" not in plain and "\t" not in plain
    redacted = preview(text, Settings(env="test", home=tmp_path, redact_pii=True))
    assert redacted == "Hi, please refund [email], IBAN [iban], call [phone]"


def test_preview_always_masks_secrets_and_cuts(tmp_path: Path) -> None:
    text = "my key is dpk_AbCdEfGhIjKlMnOpQrSt " + "x" * 500
    out = preview(text, Settings(env="test", home=tmp_path), limit=40)
    assert "AbCdEfGhIj" not in out
    assert len(out) == 40 and out.endswith("…")


# --- stored snippets: the similar tickets kept beside a decision -----------------------------

POLICY = """\
version: 1
systems:
  helpdesk: {connector: generic, url: "http://127.0.0.1:9/", credentials: helpdesk}
tasks:
  queue:
    destinations:
      billing: {system: helpdesk, queue: billing-team}
triage: {system: helpdesk, queue: triage}
"""


@pytest.mark.parametrize("redact_pii", [False, True])
def test_similar_ticket_snippets_are_stored_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redact_pii: bool
) -> None:
    from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

    from deskpilot.store import create_api_key

    similar_text = "refund to DE89 3704 0044 0532 0130 00 for jane@example.com, key dpk_AbCdEfGhIjKlMnOpQrSt"

    class WithSimilar(KeywordPredictor):
        def similar(self, tenant: str, task: str, text: str, k: int = 3) -> list[dict[str, object]]:
            return [{"text": similar_text, "label": "billing", "score": 0.93}]

    predictor = WithSimilar({"queue": Keywords({"invoice": "billing"}, "other", ("billing", "other"))})
    with run_workflow(
        tmp_path,
        monkeypatch,
        predictor,
        make=Workflow,
        policy=POLICY,
        connector_secrets={"helpdesk": "t"},
        redact_pii=redact_pii,
    ) as flow:
        with flow.database.session() as session:
            _, key = create_api_key(session, "acme", "ci")
        headers = {"Authorization": f"Bearer {key}"}
        created = flow.http.post("/v1/tickets", json={"subject": "s", "body": "invoice"}, headers=headers)
        flow.run_jobs()
        ticket = flow.http.get(f"/v1/tickets/{created.json()['ticket_id']}", headers=headers).json()
    (decision,) = ticket["decisions"]
    (shown,) = decision["explanation"]["similar"]
    assert "AbCdEfGhIj" not in shown["text"]  # a secret: always masked
    if redact_pii:
        assert shown["text"] == "refund to [iban] for [email], key dpk_[redacted]"
    else:
        assert "jane@example.com" in shown["text"] and "DE89 3704" in shown["text"]
