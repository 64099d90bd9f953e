"""`python -m mongobackup.dashboards --out deployments/grafana`: writes the provisioning files."""

import sys

from mongobackup.dashboards.provisioning import main

sys.exit(main())
