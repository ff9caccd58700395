"""Configuration from the environment (and `.env`), validated once at start-up."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.standard_webhooks import decode_secret

Mode = Literal["live", "sandbox"]

# Live mode cannot run without these; sandbox mode generates what it lacks.
REQUIRED_IN_LIVE = (
    "DATABASE_URL",
    "PORTONE_API_SECRET",
    "PORTONE_STORE_ID",
    "PORTONE_WEBHOOK_SECRETS",
    "INTERNAL_API_TOKEN",
)


PORTONE_API = "https://api.portone.io"

# Below these a secret can be guessed or brute-forced offline (an HMAC key is as strong as
# its bytes; the token is compared on every internal call).
MIN_TOKEN_CHARACTERS = 32
MIN_KEY_BYTES = 24


class ConfigurationError(Exception):
    """The environment does not describe a service that can start."""


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def async_database_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` URLs and select the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    portone_mode: Mode = "live"
    database_url: SecretStr | None = None  # its password is a secret too
    database_pool_size: int = Field(default=30, ge=1, le=1000)  # per worker process
    portone_api_base_url: AnyHttpUrl | None = None
    portone_api_secret: SecretStr | None = None
    portone_store_id: str | None = None
    portone_channel_key: str | None = None
    portone_max_in_flight: int = Field(default=100, ge=1, le=10_000)  # per worker process
    portone_webhook_secrets: Annotated[list[SecretStr], NoDecode] = []
    portone_accept_test_payments: bool | None = None
    portone_pre_register: bool = False
    internal_api_token: SecretStr | None = None
    auto_cancel_on_mismatch: bool = True
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=86_400)
    reconcile_interval_seconds: float = Field(default=60, ge=0)
    cors_allow_origins: Annotated[list[str], NoDecode] = []
    order_events_url: AnyHttpUrl | None = None
    order_events_secret: SecretStr | None = None
    public_base_url: AnyHttpUrl | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _generated: frozenset[str] = PrivateAttr(default=frozenset())

    _split = field_validator("portone_webhook_secrets", "cors_allow_origins", mode="before")(
        _split_commas
    )

    @field_validator("portone_webhook_secrets", "order_events_secret")
    @classmethod
    def _whsec(
        cls, value: list[SecretStr] | SecretStr | None
    ) -> list[SecretStr] | SecretStr | None:
        for secret in value if isinstance(value, list) else [value] if value else []:
            decode_secret(secret.get_secret_value())
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, url: SecretStr | None) -> SecretStr | None:
        return None if url is None else SecretStr(async_database_url(url.get_secret_value()))

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        refusals = self._refusals()
        if refusals:
            raise ConfigurationError("\n".join(refusals))
        return self._with_sandbox_defaults() if self.portone_mode == "sandbox" else self

    def _refusals(self) -> list[str]:
        """One line per variable that keeps the service from starting as configured."""
        live = self.portone_mode == "live"
        refusals = [
            f"{name}: required in live mode"
            for name in REQUIRED_IN_LIVE
            if live and not getattr(self, name.lower())
        ]
        if self.order_events_url and not self.order_events_secret:
            refusals.append("ORDER_EVENTS_SECRET: required with ORDER_EVENTS_URL")
        if not live and self.portone_api_base_url is not None:
            refusals.append(
                "PORTONE_API_BASE_URL: sandbox mode talks only to its own emulator; "
                "unset it, or set PORTONE_MODE=live"
            )
        if live:
            refusals += self._weak()
        return refusals

    def _weak(self) -> list[str]:
        """Live secrets too short to be secret (sandbox mode makes up strong ones)."""
        weak = []
        token = self.internal_api_token
        if token and len(token.get_secret_value()) < MIN_TOKEN_CHARACTERS:
            weak.append(f"INTERNAL_API_TOKEN: must be at least {MIN_TOKEN_CHARACTERS} characters")
        keys = {
            "PORTONE_WEBHOOK_SECRETS": self.portone_webhook_secrets,
            "ORDER_EVENTS_SECRET": [self.order_events_secret] if self.order_events_secret else [],
        }
        for name, values in keys.items():
            if any(len(decode_secret(s.get_secret_value())) < MIN_KEY_BYTES for s in values):
                weak.append(f"{name}: each secret must decode to at least {MIN_KEY_BYTES} bytes")
        return weak

    def _with_sandbox_defaults(self) -> Settings:
        # The model is frozen; sandbox defaults are filled in once, right after validation.
        defaults: dict[str, Any] = {
            "portone_api_secret": SecretStr(secrets.token_urlsafe(24)),
            "portone_store_id": "store-sandbox",
            "portone_channel_key": "channel-key-sandbox",
            "portone_webhook_secrets": [
                SecretStr("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
            ],
            "internal_api_token": SecretStr(secrets.token_urlsafe(24)),
        }
        generated = {name: value for name, value in defaults.items() if not getattr(self, name)}
        generated["portone_accept_test_payments"] = self.portone_accept_test_payments is not False
        for name, value in generated.items():
            object.__setattr__(self, name, value)
        self._generated = frozenset(generated) - {"portone_accept_test_payments"}
        return self

    def generated_for_sandbox(self) -> dict[str, str]:
        """What sandbox mode made up because it was not set, by variable name, to print once
        at start-up (made-up sandbox values are not secrets; real ones are never shown)."""
        shown = {}
        for name in sorted(self._generated):
            value = getattr(self, name)
            value = value[0] if isinstance(value, list) else value
            shown[name.upper()] = (
                value.get_secret_value() if isinstance(value, SecretStr) else value
            )
        return shown

    @property
    def accept_test_payments(self) -> bool:
        return bool(self.portone_accept_test_payments)

    @property
    def store_id(self) -> str:
        assert self.portone_store_id is not None
        return self.portone_store_id

    @property
    def api_base_url(self) -> str:
        return str(self.portone_api_base_url or PORTONE_API).rstrip("/")

    @property
    def redirect_url(self) -> str | None:
        """Where PortOne's redirect flow brings the customer back (`GET /payments/return`)."""
        if self.public_base_url is None:
            return None
        return str(self.public_base_url).rstrip("/") + "/payments/return"

    @property
    def webhook_keys(self) -> list[bytes]:
        return [decode_secret(s.get_secret_value()) for s in self.portone_webhook_secrets]

    @property
    def api_secret(self) -> str:
        assert self.portone_api_secret is not None
        return self.portone_api_secret.get_secret_value()


def load_settings() -> Settings:
    """Read the environment; a `ConfigurationError` names every variable that is wrong, one
    line each."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigurationError("\n".join(problems)) from None
