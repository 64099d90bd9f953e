"""The plan's `notify:` section: where success and failure events go (InfluxDB 1.x or 2.x API)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mongobackup.plan.fields import SecretField, SecretRef, Section, check_http_url


class InfluxV1Plan(Section):
    """InfluxDB 1.x: line protocol to `/write?db=<database>`."""

    #: password_env or password_secret; neither for a server without authentication.
    secret_fields: ClassVar = {"password": SecretField()}

    api: Literal["v1"]
    url: str
    database: str
    username: str | None = None
    password: SecretRef | None = None

    _url = field_validator("url")(check_http_url)

    @model_validator(mode="after")
    def _password_needs_user(self) -> InfluxV1Plan:
        if self.password is not None and not self.username:
            raise ValueError(f"{self.password.source} is set but username is not")
        return self


class InfluxV2Plan(Section):
    """InfluxDB 2.x (or VictoriaMetrics, InfluxDB 1.8+) through `/api/v2/write` with influxdb-client."""

    #: The API token: token_env or token_secret; neither for a server without authentication (VictoriaMetrics).
    secret_fields: ClassVar = {"token": SecretField()}

    api: Literal["v2"]
    url: str
    org: str
    bucket: str
    token: SecretRef | None = None

    _url = field_validator("url")(check_http_url)


InfluxPlan = Annotated[InfluxV1Plan | InfluxV2Plan, Field(discriminator="api")]


class NotifyPlan(Section):
    """Where success and failure events go."""

    influxdb: InfluxPlan | None = None
