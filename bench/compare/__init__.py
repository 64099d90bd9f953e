"""Benchmark: backup and restore side by side with the stock tools and the old pipeline (issue 6).

    .venv/bin/python -m bench.compare [--sizes 19,50,152] [--runs 3] [--keep-data]

One run on one machine: it starts its own SecantusDB servers (`mongo-a` the source, `mongo-b` the restore
target), moto and, for the one flow run per size, a Prefect server; generates each size's data once (one
database of S MB, and an "instance" of three databases of S/3 MB), then measures per size, each figure the
median of --runs runs taken round-robin across sizes and subjects (so background load spreads evenly):

- floor: a raw pymongo scan (RawBSONDocument, no processing) of the same data;
- stock `mongodump --archive --gzip` (under wine) to a file;
- the old pipeline: mongodump to a folder, `gpg --encrypt` per file (gpg's defaults), `s3cmd put`;
- ours: the core (`transfer_database` + `verify_upload`, backup_memory's child) for one database, our own
  child for the instance (transfer, verify, manifest commit per database), and one run of the Prefect flow;
- our zstd -> gpg -> S3 path alone on generated BSON (transfer_database over an in-memory archive source);
- restore: `restore_backup` (with and without read-back verification) and the stock mongorestore from the
  same backup, which first has to be decrypted and decompressed to a file (timed as its own row).

Wall, MB/s (of the data's BSON), peak RSS of the process tree, temp disk (files the tree wrote: its own
TMPDIR plus anything else it held open for writing) and stored bytes go to one table, bench/results/
compare.json and compare.png; the CLI also publishes the table and chart as bench/RESULTS.md and
bench/compare.png. It checks the issue's targets and says MET or MISSED; it asserts nothing.

The modules: `settings` (sizes, paths, the fixed settings of every run), `workspace` (the services, key and
data a run measures with), `backups` and `restores` (one function per subject, each measuring one run),
`children` (what runs in a measured child process), `report` (summaries, tables, targets, the results
document: pure), `chart`, `run` (one whole benchmark) and `__main__` (the command line). The shared harness
(process-tree sampling, disk probe, child environment) and the data generator are `bench.harness` and
`bench.datasets`, shared with `bench.backup_memory`.
"""
