"""Key/value store snapshots (Consul, etcd) through the same verified pipeline as the databases.

`plan` the `snapshots:` section; `consul` and `etcd` take a snapshot from the store's API and check it as
it streams past (the checks the stock tools' `snapshot inspect` / `snapshot status` make); `store` the
shared stages (check, optional zstd, gpg, S3 multipart, verify) and `take` one source's whole snapshot with
its manifest (`manifest`); `restore` reads one back into the file the stock restore tools accept;
`scratch_etcd` restores an etcd snapshot into a throwaway etcd to read its keys back (the drill).
"""

# The plan's sections are the base of `snapshots.plan`, and `BackupPlan` holds the snapshot sources: loading
# `mongobackup.plan` first, whichever module is imported first, keeps that a hierarchy rather than a cycle.
import mongobackup.plan  # noqa: E402, F401
