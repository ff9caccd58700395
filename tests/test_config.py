from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import REQUIRED_IN_LIVE, ConfigurationError, Settings, load_settings

SECRET_ONE = "whsec_" + base64.b64encode(b"secret-one-0451-of-24-bytes").decode()
SECRET_TWO = "whsec_" + base64.b64encode(b"secret-two-0451-of-24-bytes").decode()
LIVE = {
    "DATABASE_URL": "postgresql+asyncpg://verifier:db-password-0451@db.internal:5432/verifier",
    "PORTONE_API_SECRET": "portone-api-secret-0451",
    "PORTONE_STORE_ID": "store-0451",
    "PORTONE_WEBHOOK_SECRETS": f"{SECRET_ONE}, {SECRET_TWO}",
    "INTERNAL_API_TOKEN": "internal-api-token-0451-of-32-characters",
}
EVENTS_URL = "https://shop.example/order-events"
LIVE_EVENTS_SECRET = "whsec_b3JkZXItZXZlbnRzLTA0NTEtMjQtYnl0ZXM="
SECRETS = [
    "portone-api-secret-0451",
    SECRET_ONE,
    SECRET_TWO,
    SECRET_ONE.removeprefix("whsec_"),
    "internal-api-token-0451",
    LIVE_EVENTS_SECRET,
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No configuration at all: no variable the settings read, and no `.env` to fall back on."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def live(environment: pytest.MonkeyPatch, **overrides: str) -> None:
    for name, value in (LIVE | overrides).items():
        environment.setenv(name, value)


def load_or_refusal() -> Settings | ConfigurationError:
    try:
        return load_settings()
    except ConfigurationError as refused:
        return refused


def test_live_mode_without_configuration_names_each_missing_variable_on_a_line_of_its_own(
    environment: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    lines = str(raised.value).splitlines()
    assert [line.split(":")[0] for line in lines] == list(REQUIRED_IN_LIVE)


@pytest.mark.parametrize("missing", REQUIRED_IN_LIVE)
def test_live_mode_names_exactly_the_missing_variable(
    environment: pytest.MonkeyPatch, missing: str
) -> None:
    live(environment)
    environment.delenv(missing)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    message = str(raised.value)
    assert missing in message
    assert [name for name in REQUIRED_IN_LIVE if name in message] == [missing]


def test_live_mode_treats_an_empty_variable_as_missing(environment: pytest.MonkeyPatch) -> None:
    live(environment, INTERNAL_API_TOKEN="")

    with pytest.raises(ConfigurationError, match="INTERNAL_API_TOKEN"):
        load_settings()


def serve(folder: Path, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m app serve`, in `folder` and with `env` only, for a start that fails."""
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", *arguments],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_configuration_exits_with_the_missing_variables_on_stderr(
    tmp_path: Path,
) -> None:
    result = serve(tmp_path, {"PATH": os.environ["PATH"]})

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(REQUIRED_IN_LIVE), result.stderr


def test_complete_live_configuration_loads(environment: pytest.MonkeyPatch) -> None:
    live(environment)

    settings = load_settings()

    assert settings.portone_mode == "live"
    assert settings.store_id == "store-0451"
    assert settings.api_secret == "portone-api-secret-0451"
    assert settings.api_base_url == "https://api.portone.io"
    assert settings.accept_test_payments is False
    assert settings.portone_pre_register is False
    assert settings.auto_cancel_on_mismatch is True
    assert settings.webhook_tolerance_seconds == 300
    assert settings.reconcile_interval_seconds == 60
    assert settings.cors_allow_origins == []
    assert settings.order_events_url is None


def test_sandbox_mode_generates_what_live_mode_requires(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("PORTONE_MODE", "sandbox")

    settings = load_settings()

    assert settings.portone_mode == "sandbox"
    assert settings.api_secret
    assert settings.store_id
    assert settings.portone_webhook_secrets
    assert settings.portone_webhook_secrets[0].get_secret_value().startswith("whsec_")
    assert settings.internal_api_token is not None
    assert settings.internal_api_token.get_secret_value()
    assert settings.accept_test_payments is True


def test_sandbox_mode_keeps_what_is_set(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("PORTONE_MODE", "sandbox")
    environment.setenv("INTERNAL_API_TOKEN", "chosen-token")
    environment.setenv("PORTONE_ACCEPT_TEST_PAYMENTS", "false")

    settings = load_settings()

    assert settings.internal_api_token is not None
    assert settings.internal_api_token.get_secret_value() == "chosen-token"
    assert settings.accept_test_payments is False


def test_sandbox_generates_webhook_secrets_in_standard_webhooks_form(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("PORTONE_MODE", "sandbox")

    # Generated secrets are random; enough draws that an alphabet slip cannot hide.
    for _ in range(20):
        secret = load_settings().portone_webhook_secrets[0].get_secret_value()
        assert secret.startswith("whsec_")
        assert base64.b64decode(secret.removeprefix("whsec_"), validate=True), secret


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://verifier:pw@db.internal:5432/verifier",
        "postgres://verifier:pw@db.internal:5432/verifier",
        "postgresql+asyncpg://verifier:pw@db.internal:5432/verifier",
    ],
)
def test_database_url_selects_the_asyncpg_driver(environment: pytest.MonkeyPatch, url: str) -> None:
    live(environment, DATABASE_URL=url)

    settings = load_settings()

    assert settings.database_url is not None
    expected = "postgresql+asyncpg://verifier:pw@db.internal:5432/verifier"
    assert settings.database_url.get_secret_value() == expected


def test_database_url_of_another_database_refuses_to_start(
    environment: pytest.MonkeyPatch,
) -> None:
    live(environment, DATABASE_URL="mysql://verifier:pw@db.internal/verifier")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert str(raised.value).startswith("DATABASE_URL:")
    assert "\n" not in str(raised.value)


def test_webhook_secrets_are_split_on_commas(environment: pytest.MonkeyPatch) -> None:
    live(
        environment,
        PORTONE_WEBHOOK_SECRETS=f"{SECRET_ONE},{SECRET_TWO} ",
    )

    settings = load_settings()

    assert [s.get_secret_value() for s in settings.portone_webhook_secrets] == [
        "whsec_c2VjcmV0LW9uZS0wNDUxLW9mLTI0LWJ5dGVz",
        "whsec_c2VjcmV0LXR3by0wNDUxLW9mLTI0LWJ5dGVz",
    ]


def test_cors_origins_are_split_on_commas(environment: pytest.MonkeyPatch) -> None:
    live(environment, CORS_ALLOW_ORIGINS="https://shop.example, https://m.shop.example")

    settings = load_settings()

    assert settings.cors_allow_origins == ["https://shop.example", "https://m.shop.example"]


def test_settings_never_show_secrets(environment: pytest.MonkeyPatch) -> None:
    live(environment, ORDER_EVENTS_URL=EVENTS_URL, ORDER_EVENTS_SECRET=LIVE_EVENTS_SECRET)

    settings = load_settings()

    for shown in (repr(settings), str(settings)):
        for secret in SECRETS:
            assert secret not in shown


def test_settings_never_show_the_database_password(environment: pytest.MonkeyPatch) -> None:
    live(environment)

    settings = load_settings()

    assert "db-password-0451" not in repr(settings)
    assert "db-password-0451" not in str(settings)


def test_configuration_error_never_shows_secrets(environment: pytest.MonkeyPatch) -> None:
    live(environment, ORDER_EVENTS_URL=EVENTS_URL)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    for secret in [*SECRETS, "db-password-0451"]:
        assert secret not in str(raised.value)


def test_order_events_url_without_secret_refuses_to_start(
    environment: pytest.MonkeyPatch,
) -> None:
    live(environment, ORDER_EVENTS_URL=EVENTS_URL)

    with pytest.raises(ConfigurationError, match="ORDER_EVENTS_SECRET") as raised:
        load_settings()

    assert "\n" not in str(raised.value)


def test_order_events_url_with_secret_loads(environment: pytest.MonkeyPatch) -> None:
    live(environment, ORDER_EVENTS_URL=EVENTS_URL, ORDER_EVENTS_SECRET=LIVE_EVENTS_SECRET)

    settings = load_settings()

    assert str(settings.order_events_url) == EVENTS_URL


def test_sandbox_never_sends_unsigned_order_events(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("PORTONE_MODE", "sandbox")
    environment.setenv("ORDER_EVENTS_URL", EVENTS_URL)

    outcome = load_or_refusal()

    if isinstance(outcome, ConfigurationError):
        assert "ORDER_EVENTS_SECRET" in str(outcome)
    else:
        assert outcome.order_events_secret is not None


@pytest.mark.parametrize(
    ("variable", "weak"),
    [
        ("INTERNAL_API_TOKEN", "tok"),
        ("INTERNAL_API_TOKEN", "x" * 31),
        ("PORTONE_WEBHOOK_SECRETS", "whsec_"),
        ("PORTONE_WEBHOOK_SECRETS", "whsec_" + base64.b64encode(b"x" * 23).decode()),
        ("ORDER_EVENTS_SECRET", "whsec_" + base64.b64encode(b"x" * 23).decode()),
    ],
)
def test_live_mode_refuses_a_weak_secret_naming_only_its_variable(
    environment: pytest.MonkeyPatch, variable: str, weak: str
) -> None:
    live(environment, ORDER_EVENTS_URL=EVENTS_URL)
    environment.setenv("ORDER_EVENTS_SECRET", LIVE_EVENTS_SECRET)
    environment.setenv(variable, weak)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert [line.split(":")[0] for line in str(raised.value).splitlines()] == [variable]


def test_live_mode_names_every_weak_secret_on_a_line_of_its_own(
    environment: pytest.MonkeyPatch,
) -> None:
    live(
        environment,
        INTERNAL_API_TOKEN="short",
        PORTONE_WEBHOOK_SECRETS=f"{LIVE['PORTONE_WEBHOOK_SECRETS']}, whsec_",
    )

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    lines = str(raised.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "INTERNAL_API_TOKEN",
        "PORTONE_WEBHOOK_SECRETS",
    ]


def test_the_shortest_strong_secrets_start(environment: pytest.MonkeyPatch) -> None:
    live(
        environment,
        INTERNAL_API_TOKEN="x" * 32,
        PORTONE_WEBHOOK_SECRETS="whsec_" + base64.b64encode(b"x" * 24).decode(),
    )

    assert load_settings().internal_api_token is not None


def test_sandbox_mode_refuses_a_portone_url(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("PORTONE_MODE", "sandbox")
    environment.setenv("PORTONE_API_BASE_URL", "https://api.portone.io")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert str(raised.value).startswith("PORTONE_API_BASE_URL:")


def test_serve_in_sandbox_mode_with_a_portone_url_refuses_to_start(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_BASE_URL": "https://api.portone.io",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    }
    result = serve(tmp_path, env, "--port", "9")

    assert result.returncode == 2
    assert result.stderr.startswith("PORTONE_API_BASE_URL: sandbox mode talks only to its own")
    assert "SANDBOX MODE" not in result.stdout
