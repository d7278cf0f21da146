"""Kafka TLS/SASL settings reach every client in a form aiokafka and faust accept.

No local broker can check them end to end (Tansu 0.6: SASL handshakes are refused or no user
can be created, and `--cert`/`--key` cannot be combined, so no TLS handshake completes — see the
issue notes), so this checks what we control: the options each client is built with.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from stream.config.settings import Settings
from stream.infra.connections import kafka_client_kwargs
from stream.service.credentials import faust_broker_credentials
from tests.support.tls import make_pki


def test_plaintext_by_default() -> None:
    s = Settings()
    assert kafka_client_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_credentials(s) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_over_tls_builds_clients(mechanism: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="worker",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_tls_ca_file=str(pki.ca_file),
        kafka_tls_cert_file=str(pki.client_cert),
        kafka_tls_key_file=str(pki.client_key),
    )
    kwargs = kafka_client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("worker", "s3cret")
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # aiokafka validates these combinations in its constructors (it raises on a bad one).
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kwargs)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kwargs)
    assert consumer._client._security_protocol == "SASL_SSL"
    await producer.client.close()
    await consumer._client.close()
    creds = faust_broker_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "worker" and creds.mechanism.value == mechanism


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="SASL needs"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT")


def test_tls_only_gives_faust_ssl_credentials(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    s = Settings(kafka_security_protocol="SSL", kafka_tls_ca_file=str(pki.ca_file))
    assert "sasl_mechanism" not in kafka_client_kwargs(s)
    assert isinstance(faust_broker_credentials(s), faust.SSLCredentials)
