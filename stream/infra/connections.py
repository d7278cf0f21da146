"""Client options for Kafka and Redis built from settings: TLS, SASL and ACL credentials.

Every process that talks to Kafka (the engine's consumer, faust's producer — whose credentials
:mod:`stream.service.credentials` translates from these —, the admin client
creating topics, the tools' publishers) takes its options from here, so that none of them can
quietly connect in clear or without credentials while the others are secured. What these
functions return holds secrets: never log it.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka.helpers import create_ssl_context

from stream.config.settings import Settings
from stream.engine.store import RedisTarget

__all__ = ["kafka_client_kwargs", "kafka_ssl_context", "redacted_url", "redis_target"]


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_tls_ca_file or None,
        certfile=settings.kafka_tls_cert_file or None,
        keyfile=settings.kafka_tls_key_file or None,
    )
    return context


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def redis_target(settings: Settings) -> RedisTarget:
    return RedisTarget(
        settings.redis_url,
        username=settings.redis_username,
        password=settings.redis_password.get_secret_value(),
        tls_ca_file=settings.redis_tls_ca_file,
        tls_cert_file=settings.redis_tls_cert_file,
        tls_key_file=settings.redis_tls_key_file,
        cluster=settings.redis_cluster,
    )


def redacted_url(url: str) -> str:
    """A URL safe to print: the password part of ``user:password@`` replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
