"""Apache Kafka in KRaft mode (no ZooKeeper) as a testcontainer, optionally with SASL_SSL SCRAM and mutual-TLS listeners.

Current Apache Kafka (4.x) has no ZooKeeper mode; testcontainers-python's `KafkaContainer` is
built around Confluent's images, so this starts the official `apache/kafka` image itself, the way
testcontainers-java does: the container waits for a start script that we write once the host
ports are known (they go into the advertised listeners), then runs the image's own launcher.

Used only where a Docker engine answers (`devstack.infra.docker_available`); nothing here runs on
machines without Docker.
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent
from typing import Self

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from devstack.tls import Pki, make_test_pki

#: A current Apache Kafka release; KRaft is its only mode.
KAFKA_IMAGE = "apache/kafka:4.1.1"
START_SCRIPT = "/tmp/devstack_start.sh"  # noqa: S108 - inside the container
PLAINTEXT_PORT = 9093
SECURE_PORT = 9095
MUTUAL_TLS_PORT = 9096


@dataclass(frozen=True)
class SecureListener:
    """How to reach the SASL_SSL listener: bootstrap, SCRAM-SHA-512 user and password, the CA that signed it."""

    bootstrap_servers: str
    username: str
    password: str
    pki: Pki
    mutual_tls_bootstrap_servers: str | None = None
    """The `MTLS` listener (TLS, a client certificate of `pki`'s CA required), with `with_mutual_tls()`."""


def kraft_environment(*, secure: bool = False, mutual_tls: bool = False) -> dict[str, str]:
    """The image's configuration (env names map to properties: `_` is `.`, `___` is `-`)."""
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
    }
    if secure:
        env |= {
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
            + ",SECURE:SASL_SSL",
            "KAFKA_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-512",
            "KAFKA_LISTENER_NAME_SECURE_SCRAM___SHA___512_SASL_JAAS_CONFIG": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "KAFKA_LISTENER_NAME_SECURE_SSL_KEYSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_SECURE_SSL_KEYSTORE_LOCATION": "/certs/server.pem",
            "KAFKA_LISTENER_NAME_SECURE_SSL_TRUSTSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_SECURE_SSL_TRUSTSTORE_LOCATION": "/certs/ca.crt",
        }
    if mutual_tls:
        env |= {
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] + ",MTLS:SSL",
            "KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH": "required",
            "KAFKA_LISTENER_NAME_MTLS_SSL_KEYSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_MTLS_SSL_KEYSTORE_LOCATION": "/certs/server.pem",
            "KAFKA_LISTENER_NAME_MTLS_SSL_TRUSTSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_MTLS_SSL_TRUSTSTORE_LOCATION": "/certs/ca.crt",
        }
    return env


class KraftKafkaContainer(DockerContainer):
    """One broker+controller node; `PLAINTEXT` on `get_bootstrap_server()`, SASL_SSL with `with_sasl_ssl()`."""

    def __init__(self, image: str = KAFKA_IMAGE, *, pki_dir: Path | None = None) -> None:
        super().__init__(image)
        self._secure = False
        self._mutual_tls = False
        self._pki_dir = pki_dir
        self.secure_listener: SecureListener | None = None
        self.with_exposed_ports(PLAINTEXT_PORT)
        for key, value in kraft_environment().items():
            self.with_env(key, value)
        self.with_command(
            ["sh", "-c", f"while [ ! -f {START_SCRIPT} ]; do sleep 0.1; done; . {START_SCRIPT}"]
        )

    def with_sasl_ssl(self) -> Self:
        """Add a `SECURE` listener: SASL SCRAM-SHA-512 over TLS, a throwaway CA, a user created at start."""
        self._secure = True
        self.with_exposed_ports(SECURE_PORT)
        self._apply_environment()
        return self

    def with_mutual_tls(self) -> Self:
        """Add an `MTLS` listener: TLS that requires a client certificate signed by the throwaway CA.

        Needs `with_sasl_ssl()` too: the listener reports its address in `secure_listener`.
        """
        self._mutual_tls = True
        self.with_exposed_ports(MUTUAL_TLS_PORT)
        self._apply_environment()
        return self

    def _apply_environment(self) -> None:
        for key, value in kraft_environment(secure=self._secure, mutual_tls=self._mutual_tls).items():
            self.with_env(key, value)

    def get_bootstrap_server(self) -> str:
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(PLAINTEXT_PORT)}"

    def start(self, timeout: float = 90) -> Self:
        if self._mutual_tls and not self._secure:
            raise ValueError("with_mutual_tls() needs with_sasl_ssl(): it shares its certificates")
        super().start()
        host = self.get_container_host_ip()
        listeners = [
            f"PLAINTEXT://0.0.0.0:{PLAINTEXT_PORT}",
            "BROKER://0.0.0.0:9092",
            "CONTROLLER://0.0.0.0:9094",
        ]
        advertised = [
            f"PLAINTEXT://{host}:{self.get_exposed_port(PLAINTEXT_PORT)}",
            "BROKER://localhost:9092",
        ]
        pki: Pki | None = None
        if self._mutual_tls:
            listeners.append(f"MTLS://0.0.0.0:{MUTUAL_TLS_PORT}")
            advertised.append(f"MTLS://{host}:{self.get_exposed_port(MUTUAL_TLS_PORT)}")
        if self._secure:
            listeners.append(f"SECURE://0.0.0.0:{SECURE_PORT}")
            advertised.append(f"SECURE://{host}:{self.get_exposed_port(SECURE_PORT)}")
            # The server certificate must name the host the client connects to, known only now.
            pki = make_test_pki(
                self._pki_dir or Path(tempfile.mkdtemp(prefix="devstack-kafka-pki-")),
                hostnames=(host, "localhost"),
            )
            server_pem = pki.server_key.read_bytes() + pki.server_cert.read_bytes()
            self._put({"/certs/server.pem": server_pem, "/certs/ca.crt": pki.ca.read_bytes()})
        script = dedent(
            f"""
            export KAFKA_LISTENERS={",".join(listeners)}
            export KAFKA_ADVERTISED_LISTENERS={",".join(advertised)}
            exec /etc/kafka/docker/run
            """
        ).strip()
        self._put({START_SCRIPT: script.encode()})
        wait = LogMessageWaitStrategy(re.compile(r".*Kafka Server started.*"))
        wait.with_startup_timeout(int(timeout))
        wait.wait_until_ready(self)
        if pki is not None:
            password = secrets.token_urlsafe(16)
            self._add_scram_user("billing-test", password)
            self.secure_listener = SecureListener(
                bootstrap_servers=f"{host}:{self.get_exposed_port(SECURE_PORT)}",
                username="billing-test",
                password=password,
                pki=pki,
                mutual_tls_bootstrap_servers=f"{host}:{self.get_exposed_port(MUTUAL_TLS_PORT)}"
                if self._mutual_tls
                else None,
            )
        return self

    def _add_scram_user(self, user: str, password: str) -> None:
        result = self.exec(
            [
                "/opt/kafka/bin/kafka-configs.sh",
                "--bootstrap-server",
                "localhost:9092",
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                user,
                "--add-config",
                f"SCRAM-SHA-512=[iterations=4096,password={password}]",
            ]
        )
        if result.exit_code != 0:
            raise RuntimeError(f"could not create the SCRAM user: {result.output!r}")
        time.sleep(1)  # the credential reaches the SECURE listener's authenticator through the metadata log

    def _put(self, files: dict[str, bytes]) -> None:
        with io.BytesIO() as archive:
            with tarfile.TarFile(fileobj=archive, mode="w") as tar:
                for path, content in files.items():
                    info = tarfile.TarInfo(name=path.lstrip("/"))
                    info.size = len(content)
                    info.mtime = int(time.time())
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(content))
            archive.seek(0)
            self.get_wrapped_container().put_archive("/", archive.getvalue())
