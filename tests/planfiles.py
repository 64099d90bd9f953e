"""Backup plans for tests, written as YAML files the way a user would write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_plan(
    path: Path,
    *,
    instances: list[dict[str, Any]],
    bucket: str,
    s3_endpoint: str,
    public_key_file: Path | None = None,
    gnupghome: Path | None = None,
    influx_url: str | None = None,
    part_size_mib: int = 5,
    **overrides: Any,
) -> Path:
    """A plan on the test services; `overrides` replace whole top-level sections."""
    encryption: dict[str, Any] = {}
    if public_key_file is not None:
        encryption["public_key_files"] = [str(public_key_file)]
    if gnupghome is not None:
        encryption["gnupghome"] = str(gnupghome)
    plan: dict[str, Any] = {
        "instances": instances,
        "storage": {
            "bucket": bucket,
            "prefix": "",
            "endpoint_url": s3_endpoint,
            "region": "us-east-1",
            "part_size_mib": part_size_mib,
        },
        "encryption": encryption,
        "compression": {"level": 3, "threads": 2},
        "tiers": {"timezone": "Europe/London", "weekly_day": "monday"},
        "retries": {"attempts": 0, "backoff_s": 0.1},
    }
    if influx_url is not None:
        plan["notify"] = {"influxdb": {"api": "v1", "url": influx_url, "database": "backups"}}
    plan.update(overrides)
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path
