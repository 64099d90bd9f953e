"""The plan's `snapshots:` section: named key/value stores (Consul, etcd) snapshotted beside the databases.

    snapshots:
      - name: consul-prod                 # in keys, events, dashboards; [A-Za-z0-9._-]
        kind: consul
        address: https://consul.internal:8501
        datacenter: dc1                   # default: the agent's own
        stale: false                      # true: any server may answer (faster, possibly behind the leader)
        token_env: CONSUL_HTTP_TOKEN      # or token_secret (a Prefect Secret block); a management token
        tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}
      - name: etcd-k8s
        kind: etcd
        endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]
        username: backup                  # with password_env or password_secret
        password_env: ETCD_PASSWORD
        tls: {ca_file: etcd-ca.pem, cert_file: etcd-client.pem, key_file: etcd-client-key.pem}

A source's name shares the key space and the status table with the instances (`<tier>/<name>/snapshot/...`),
so it must differ from every instance name. Relative TLS file paths are resolved against the plan file's
folder, like the encryption key files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mongobackup.names import check_instance_name
from mongobackup.plan.fields import SecretField, SecretRef, Section, check_http_url

SourceKind = Literal["consul", "etcd"]


class TlsPlan(Section):
    """TLS towards the store: a private CA, a client certificate (mutual TLS), a server name to expect."""

    #: PEM file of the CA that signed the server's certificate; None: the system's trust store.
    ca_file: Path | None = None
    #: PEM client certificate and its key, for servers that verify clients (Consul verify_incoming, etcd
    #: --client-cert-auth). Both or neither.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: The name the server's certificate must carry when it differs from the address's host.
    server_name: str | None = None

    @field_validator("ca_file", "cert_file", "key_file", mode="after")
    @classmethod
    def _resolve_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        from mongobackup.plan.sections import resolve_path  # the sections build on this module

        return None if path is None else resolve_path(path, info)

    @model_validator(mode="after")
    def _pair(self) -> TlsPlan:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate needs its key)")
        return self


class _SourcePlan(Section):
    name: str
    #: How long to wait for the store to answer before the snapshot fails as "unreachable".
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    tls: TlsPlan | None = None

    @field_validator("name")
    @classmethod
    def _name_fits_keys(cls, name: str) -> str:
        try:
            return check_instance_name(name)
        except ValueError:
            raise ValueError(f"snapshot source name {name!r}: use 1-64 of A-Z a-z 0-9 . _ - (not only dots)") from None

    @property
    def secret(self) -> SecretRef | None:
        """The one secret of the source (Consul's ACL token, etcd's password), or None."""
        return None


class ConsulSource(_SourcePlan):
    """A Consul cluster, snapshotted through its agent's HTTP API (`GET /v1/snapshot`)."""

    #: The ACL token (a management token when ACLs are on): token_env or token_secret.
    secret_fields: ClassVar = {"token": SecretField()}

    kind: Literal["consul"]
    #: The agent's HTTP(S) address, as CONSUL_HTTP_ADDR with its scheme: http://127.0.0.1:8500.
    address: str
    datacenter: str | None = None
    #: Let any server answer instead of only the leader (`?stale`).
    stale: bool = False
    token: SecretRef | None = None

    _address = field_validator("address")(check_http_url)

    @property
    def secret(self) -> SecretRef | None:
        return self.token


class EtcdSource(_SourcePlan):
    """An etcd v3 cluster, snapshotted through its gRPC gateway (`POST /v3/maintenance/snapshot`)."""

    #: The etcd user's password (auth enabled): password_env or password_secret, with username.
    secret_fields: ClassVar = {"password": SecretField()}

    kind: Literal["etcd"]
    #: Client URLs; the first that answers streams the snapshot (any member can: it is that member's data).
    endpoints: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretRef | None = None

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, endpoints: list[str]) -> list[str]:
        for endpoint in endpoints:
            check_http_url(endpoint)
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("an endpoint is listed more than once")
        return [endpoint.rstrip("/") for endpoint in endpoints]

    @model_validator(mode="after")
    def _password_needs_user(self) -> EtcdSource:
        if self.password is not None and not self.username:
            raise ValueError(f"{self.password.source} is set but username is not")
        if self.username and self.password is None:
            raise ValueError("username is set but neither password_env nor password_secret")
        return self

    @property
    def secret(self) -> SecretRef | None:
        return self.password


SnapshotSource = Annotated[ConsulSource | EtcdSource, Field(discriminator="kind")]


def check_sources(sources: list[ConsulSource | EtcdSource], instance_names: list[str]) -> None:
    """ValueError naming the clash when two sources, or a source and an instance, share a name.

    They would write to the same keys (`<tier>/<name>/...`) and the same status and dashboard rows.
    """
    seen: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source.name in seen:
            raise ValueError(
                f"snapshot source name {source.name!r} is used twice (snapshots.{seen[source.name]}.name and "
                f"snapshots.{index}.name); names must be unique"
            )
        if source.name in instance_names:
            raise ValueError(
                f"snapshots.{index}.name {source.name!r} is also an instance name; a source and an instance "
                "share the keys <tier>/<name>/ and the status rows, so their names must differ"
            )
        seen[source.name] = index
