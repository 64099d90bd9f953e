"""Reading a plan file: the strict YAML loader, and pydantic's errors in the words of a plan file.

    plan = load_plan("deployments/plans/local.yaml")

Every problem is reported at once, each as (dotted field path, message), with the path spelled as the user
wrote it (a secret's `uri_env`, not the `uri.env` of the model); input values are never echoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from mongobackup.plan.fields import SPELLING, SecretRef, Section
from mongobackup.plan.sections import BackupPlan


class PlanError(ValueError):
    """A plan file that cannot be read or is not valid; the message names the file and every bad field.

    `problems` holds (dotted field path, message) pairs; the path is "" for problems of the file itself.
    """

    def __init__(self, path: str | Path, problems: Sequence[tuple[str, str]]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(
            "\n".join(f"plan {self.path}: {where + ': ' if where else ''}{what}" for where, what in self.problems)
        )


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys: PyYAML would silently keep the last `storage:` section."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_plan(path: str | Path) -> BackupPlan:
    """Reads, validates and returns the plan at `path`; PlanError naming the file and each bad field.

    Relative paths in the plan (encryption.public_key_files, encryption.gnupghome) are resolved against the
    plan file's folder, so a plan works from any working directory.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(path, [("", f"cannot read the file: {exc}")]) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise PlanError(path, [("", _yaml_problem(exc))]) from None
    if not isinstance(data, dict):
        found = "nothing" if data is None else f"a {type(data).__name__}"
        raise PlanError(
            path, [("", f"expected a mapping with instances, storage, encryption, tiers ...; found {found}")]
        )
    try:
        return BackupPlan.model_validate(data, context={"base_dir": file.parent.absolute()})
    except ValidationError as exc:
        raise PlanError(path, plan_problems(exc)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context and context != problem else "")


def plan_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for each error of a BackupPlan validation, in the words of a plan file.

    The input values are never shown: a bad field may hold a secret.
    """
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False, include_input=False):
        path, fields = _walk(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
            close = get_close_matches(path.rsplit(".", 1)[-1], fields, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
            elif fields:
                message += f" (known: {', '.join(fields)})"
        elif kind == "missing":
            message = "required field is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            # A discriminated union (notify.influxdb): say which field picks the kind, and its choices.
            ctx = item.get("ctx", {})
            discriminator = str(ctx.get("discriminator", "")).strip("'")
            path = f"{path}.{discriminator}" if discriminator else path
            expected = ctx.get("expected_tags") or ", ".join(repr(tag) for tag in _union_tags(item["loc"]))
            message = (
                f"unknown value {ctx['tag']!r}" if kind == "union_tag_invalid" else "required field is missing"
            ) + (f" (expected one of {expected})" if expected else "")
        else:
            message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append((path, message))
    return problems


def _walk(loc: tuple[int | str, ...]) -> tuple[str, list[str]]:
    """The dotted path of a pydantic error location, and the field names of the last model on that path.

    pydantic puts the tag of a discriminated union (notify.influxdb.v1.url) and "[key]" for bad dict keys into
    the location; neither is a level of the YAML file, so both are dropped.
    """
    parts: list[str] = []
    current: Any = BackupPlan
    fields: list[str] = []
    for item in loc:
        current = _unwrap(current)
        if current is SecretRef:
            # uri.env -> uri_env; a key SecretRef refuses (a secret written where only _env/_secret are
            # allowed) is reported as the secret's own field.
            if item in SPELLING and parts:
                parts[-1] = SPELLING[str(item)].format(parts[-1])
            current = None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = current.yaml_fields() if issubclass(current, Section) else list(current.model_fields)
            current = current.model_fields[item].annotation if item in current.model_fields else None
            parts.append(str(item))
        elif _is_union(current):
            member = _union_member(current, item)
            if member is not None:
                current = member
                continue
            parts.append(str(item))
            current = None
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1] if get_args(current) else None
            parts.append(str(item))
        elif item == "[key]":
            continue
        else:
            parts.append(str(item))
            current = None
    return ".".join(parts), fields


def _union_tags(loc: tuple[int | str, ...]) -> list[str]:
    """The Literal values of the discriminated union at `loc` (for an error that lacks them)."""
    current: Any = BackupPlan
    for item in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and item in current.model_fields:
            current = current.model_fields[item].annotation
        elif get_origin(current) in (list, dict) and get_args(current):
            current = get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    tags: list[str] = []
    if _is_union(current):
        for member in get_args(current):
            if isinstance(member, type) and issubclass(member, BaseModel):
                for field in member.model_fields.values():
                    if get_origin(field.annotation) is Literal:
                        tags.extend(get_args(field.annotation))
    return tags


def _unwrap(annotation: Any) -> Any:
    """`X` for `Annotated[X, ...]` and for `X | None`."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if _is_union(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _union_member(union: Any, tag: int | str) -> Any:
    """The model of a discriminated union whose `api` (any Literal field) is `tag`, or None."""
    for member in get_args(union):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field in member.model_fields.values():
                if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
                    return member
    return None
