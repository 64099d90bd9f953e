"""The backup plan: the YAML file a user writes, validated by pydantic, with errors that name the field.

    plan = load_plan("deployments/plans/local.yaml")

Every section forbids unknown fields, so a misspelt option fails loudly instead of being ignored. Secrets are
never in the plan itself unless the user insists (an inline `uri` with a password works, and `warnings()`
says so): the plan names an environment variable or a Prefect Secret block (a `SecretRef`), and
`flows.resources` reads it.

- `fields`: the strict section base, `SecretRef`, shared field checks;
- `sections`: the sections and `BackupPlan`; `notify`: the InfluxDB event sinks' section;
- `loader`: `load_plan`, the strict YAML loader, pydantic errors in the words of a plan file.
Name rules (database, instance, bucket, key id) live in `mongobackup.names`, shared with dump, status, restore.
"""

from mongobackup.plan.fields import SecretRef, Section
from mongobackup.plan.loader import PlanError, load_plan, plan_problems
from mongobackup.plan.notify import InfluxPlan, InfluxV1Plan, InfluxV2Plan, NotifyPlan
from mongobackup.plan.sections import (
    BackupPlan,
    Compression,
    DrillPlan,
    EncryptionPlan,
    InstancePlan,
    RetryPlan,
    StatusPlan,
    StoragePlan,
)

__all__ = [
    "BackupPlan",
    "Compression",
    "DrillPlan",
    "EncryptionPlan",
    "InfluxPlan",
    "InfluxV1Plan",
    "InfluxV2Plan",
    "InstancePlan",
    "NotifyPlan",
    "PlanError",
    "RetryPlan",
    "SecretRef",
    "Section",
    "StatusPlan",
    "StoragePlan",
    "load_plan",
    "plan_problems",
]
