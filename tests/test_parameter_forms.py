"""The run form the Prefect UI draws for each deployment: every parameter described (from the flow's docstring),
no "value or None" switch that reads 'Property is type "None"', and times as date pickers."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def deployed_flows():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for entrypoint in sorted({d["entrypoint"] for d in spec["deployments"]}):
        path, name = entrypoint.split(":")
        yield entrypoint, getattr(import_module(path.removesuffix(".py").replace("/", ".")), name)


def test_every_parameter_of_every_deployed_flow_is_described_and_has_one_type():
    from prefect.utilities.callables import parameter_schema

    for entrypoint, flow in deployed_flows():
        properties = parameter_schema(flow.fn).model_dump()["properties"]
        for name, schema in properties.items():
            assert schema.get("description"), f"{entrypoint}: {name} has no description (Args: in the docstring)"
            assert "anyOf" not in schema, f"{entrypoint}: {name} shows a type switch: {schema['anyOf']}"
            if name == "at":
                assert schema["format"] == "date-time" and schema["default"] is None
