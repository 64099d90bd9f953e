"""The building blocks of the plan's sections: the strict `Section` base, the secret reference, field checks.

A secret (a MongoDB URI with a password, the GPG passphrase, an InfluxDB password or token) is written in a
plan file as one of up to three fields: `<name>` (the value itself, only where the plan allows it),
`<name>_env` (an environment variable holding it) or `<name>_secret` (a Prefect Secret block holding it).
The code sees one `SecretRef` per secret instead of three fields; `flows.resources` is the one place that
reads its value. The plan file's spelling does not change, and errors still name the field as written.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mongobackup.redact import redact_uri

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_HTTP_URL = re.compile(r"^https?://[^/?#\s]+(?:[/?#]\S*)?$")


def check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
    return value


def check_block_name(value: str | None) -> str | None:
    if value is not None and not _BLOCK_NAME.match(value):
        raise ValueError(f"{value!r} is not a Prefect block name (lowercase letters, digits and dashes)")
    return value


def check_http_url(value: str | None) -> str | None:
    if value is not None and not _HTTP_URL.match(value):
        raise ValueError(f"{redact_uri(value)!r} is not an http:// or https:// URL")
    return value


def check_mongodb_uri(ref: SecretRef | None) -> SecretRef | None:
    """An inline MongoDB URI must be one; the message shows it without its password."""
    if ref is not None and ref.inline is not None and not ref.inline.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"{redact_uri(ref.inline)!r} is not a mongodb:// or mongodb+srv:// URI")
    return ref


class SecretRef(BaseModel):
    """Where one secret of the plan comes from: inline, an environment variable or a Prefect Secret block.

    `name` is the field's stem in the plan file (`uri`, `passphrase`); exactly one of the sources is set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    inline: str | None = Field(default=None, repr=False)  # may be a password: never in a repr
    env: str | None = None
    secret: str | None = None

    _env = field_validator("env")(check_env_name)
    _secret = field_validator("secret")(check_block_name)

    @property
    def source(self) -> str:
        """The plan file's field the value comes from: `uri`, `uri_env` or `uri_secret`."""
        if self.inline is not None:
            return self.name
        return f"{self.name}_env" if self.env is not None else f"{self.name}_secret"

    @property
    def kind(self) -> Literal["inline", "env", "secret"]:
        return "inline" if self.inline is not None else "env" if self.env is not None else "secret"

    def describe(self) -> str:
        """Where the value comes from, safe to log: the redacted value, or the variable or block name."""
        if self.inline is not None:
            return f"{self.name} {redact_uri(self.inline)}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"Prefect Secret block {self.secret}"


class SecretField(NamedTuple):
    """How a section holds one secret: whether the plan may hold it inline, whether it must be set."""

    inline: bool = False
    required: bool = False

    def spellings(self, name: str) -> list[str]:
        return ([name] if self.inline else []) + [f"{name}_env", f"{name}_secret"]


#: SecretRef's fields as the plan file spells them, given the stem.
SPELLING = {"inline": "{}", "env": "{}_env", "secret": "{}_secret"}


class Section(BaseModel):
    """A section of the plan: unknown fields are errors, and the values cannot change once loaded."""

    # frozen: a plan is handed to many tasks; none of them may change it under the others.
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The section's secrets (field name -> how it is held); each is a `SecretRef` field of the same name.
    secret_fields: ClassVar[dict[str, SecretField]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fold_secrets(cls, data: Any) -> Any:
        """`uri`, `uri_env`, `uri_secret` of the plan file -> one `uri: SecretRef` (see the module docstring)."""
        if not cls.secret_fields or not isinstance(data, dict):
            return data
        data = dict(data)
        for name, how in cls.secret_fields.items():
            if isinstance(data.get(name), SecretRef):
                continue
            spellings = how.spellings(name)
            given = [s for s in spellings if data.get(s) is not None]
            if how.required and len(given) != 1:
                got = f"got {', '.join(given)}" if given else "got none"
                raise ValueError(f"exactly one of {', '.join(spellings)} must be set ({got})")
            if len(given) > 1:
                raise ValueError(f"set one of {' and '.join(given)}, not both")
            ref: dict[str, Any] = {"name": name}
            for field, spelling in SPELLING.items():
                key = spelling.format(name)
                if key in spellings and key in data and (value := data.pop(key)) is not None:
                    ref[field] = value
            if not how.inline and name in data:
                # Not a spelling here: SecretRef refuses the extra key, reported as the unknown field `name`.
                ref["not_allowed_inline"] = data.pop(name)
            if len(ref) > 1:
                data[name] = ref
        return data

    @classmethod
    def yaml_fields(cls) -> list[str]:
        """The field names a plan file may use in this section (secrets in their file spellings)."""
        names: list[str] = []
        for name in cls.model_fields:
            how = cls.secret_fields.get(name)
            names += how.spellings(name) if how else [name]
        return names
