"""Kafka credentials in faust's vocabulary: its producer builds its own aiokafka client, so the
TLS/SASL options of :mod:`stream.infra.connections` are handed to it as faust objects."""

from __future__ import annotations

from typing import Any

import faust

from stream.config.settings import Settings
from stream.infra.connections import kafka_ssl_context

__all__ = ["faust_broker_credentials"]


def faust_broker_credentials(settings: Settings) -> Any:
    """The same options in faust's vocabulary (its producer builds its own aiokafka client)."""
    context = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
