"""`python -m devservices start|stop|status|env`: the local services from a shell.

python -m devservices start --demo-ports          # the demo's services on their fixed ports
eval "$(python -m devservices env)"               # MONGO_A_URI, S3_ENDPOINT_URL, PREFECT_API_URL, ...
python -m devservices status
python -m devservices stop                        # by the PIDs recorded under --run-dir
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from devservices.catalog import S3_TEST_CREDENTIALS, S3_TEST_REGION
from devservices.services import DEFAULT_SERVICES, DEMO_PORTS, SERVICE_NAMES, LocalServices, ServiceError

#: The environment variable each service's address is exported as by `env`.
ENV_NAMES: dict[str, str] = {
    "mongo-a": "MONGO_A_URI",
    "mongo-b": "MONGO_B_URI",
    "mongo-scratch": "MONGO_SCRATCH_URI",
    "mongo-pitr": "MONGO_PITR_URI",
    "mongo-pitr-small": "MONGO_PITR_SMALL_URI",
    "moto": "S3_ENDPOINT_URL",
    "influxdb": "INFLUX_V1_URL",
    "victoria": "VICTORIA_URL",
    "prefect": "PREFECT_API_URL",
    "prefect-worker": "PREFECT_WORKER_HEALTH_URL",
    "prefect-worker-2": "PREFECT_WORKER_2_HEALTH_URL",
    "prefect-worker-control": "PREFECT_WORKER_CONTROL_HEALTH_URL",
    "prefect-worker-oplog": "PREFECT_WORKER_OPLOG_HEALTH_URL",
    "seaweedfs": "SEAWEEDFS_S3_URL",
}


def env_lines(services: LocalServices) -> list[str]:
    """Shell `export` lines for each service that is up; a comment for each that is not."""
    lines = []
    for status in services.status():
        if not status.healthy:
            lines.append(f"# {status.name}: {status.state}")
            continue
        name = status.name
        value = services.mongo_uri(name) if name.startswith("mongo-") else services.url(name)
        lines.append(f"export {ENV_NAMES[name]}={shlex.quote(value)}")
        if name == "moto":
            lines += [
                f"export AWS_ACCESS_KEY_ID={S3_TEST_CREDENTIALS['aws_access_key_id']}",
                f"export AWS_SECRET_ACCESS_KEY={S3_TEST_CREDENTIALS['aws_secret_access_key']}",
                f"export AWS_DEFAULT_REGION={S3_TEST_REGION}",
            ]
    return lines


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("names", nargs="*", metavar="NAME", help=f"services; known: {' '.join(SERVICE_NAMES)}")
    common.add_argument(
        "--run-dir",
        type=Path,
        default=Path(".run"),
        help="folder of the services' state folders (default .run)",
    )
    common.add_argument("--demo-ports", action="store_true", help="use the demo's fixed ports instead of free ones")
    parser = argparse.ArgumentParser(
        prog="python -m devservices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", parents=[common], help=f"start (default: {' '.join(DEFAULT_SERVICES)})")
    commands.add_parser("stop", parents=[common], help="stop by recorded PID (default: all)")
    commands.add_parser("status", parents=[common], help="one line per service: pid, port, up/down")
    commands.add_parser("env", parents=[common], help="shell export lines for the services that are up")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SERVICE_NAMES]
    if unknown:
        parser.error(f"unknown services: {' '.join(unknown)}; known: {' '.join(SERVICE_NAMES)}")

    services = LocalServices(args.run_dir, DEMO_PORTS if args.demo_ports else None)
    names = args.names or None
    try:
        if args.command == "start":
            services.start(names or DEFAULT_SERVICES)
            for status in services.status(names or DEFAULT_SERVICES):
                print(f"{status.name:<15} up on port {status.port} (pid {status.pid})")
        elif args.command == "stop":
            services.stop(names)
        elif args.command == "status":
            for status in services.status(names):
                pid = "-" if status.pid is None else str(status.pid)
                port = "-" if status.port is None else str(status.port)
                print(f"{status.name:<15} pid {pid:<8} port {port:<6} {status.state}")
        else:
            print("\n".join(env_lines(services)))
    except ServiceError as exc:
        print(f"devservices: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
