"""Point-in-time recovery: the oplog archived continuously in encrypted segments, and restores to any second.

settings.py  the plan's `pitr:` section
keys.py      where segments, their manifests and gap markers live in the bucket
segment.py   one segment: entries -> zstd -> gpg -> S3, its manifest (the commit marker), and reading it back
chain.py     the segments of an instance as chains and windows: resume point, gaps, lag, verification
archiver.py  tailing `local.oplog.rs` and cutting segments
point.py     restore to a point: a base backup, then the chain's entries up to the point
"""
