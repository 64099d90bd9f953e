"""The plan's `pitr:` section: continuous oplog archiving for point-in-time recovery.

    pitr:
      segment_s: 30        # cut a segment at least this often (the recovery point objective, roughly)
      segment_mib: 16      # or when this much raw oplog has gathered, whichever comes first
      max_lag_s: 120       # status and watchdog turn RED when the newest archived entry is older than this
      retry_max_s: 30      # while S3 or MongoDB fails, the wait between attempts doubles from 1 s up to this

Without the section no instance is archived and status shows no recovery-point lag. With it, every instance of
the plan is expected to run an archiver (`flows.oplog`), and status judges each one's lag.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PitrPlan(BaseModel):
    """How the oplog is archived and how fresh the archive must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A segment is cut once its first entry was read this many seconds ago: the lag's main part.
    segment_s: float = Field(default=30.0, ge=1, le=3600)
    #: ... or once this many MiB of raw oplog entries are gathered: the archiver's memory bound.
    segment_mib: int = Field(default=16, ge=1, le=1024)
    #: RED in status and the watchdog when now minus the newest archived entry's time exceeds this.
    max_lag_s: float = Field(default=120.0, gt=0, le=7 * 86400)
    #: While storing a segment (or reading the archive or the oplog) fails, the wait between attempts doubles
    #: from 1 s up to this: at most this much lag is added after an outage ends, for this many attempts spared.
    retry_max_s: float = Field(default=30.0, ge=1, le=600)

    @model_validator(mode="after")
    def _lag_above_segment(self) -> PitrPlan:
        # A healthy archiver's lag reaches segment_s before each cut: a threshold below it is always RED.
        if self.max_lag_s <= self.segment_s:
            raise ValueError(f"max_lag_s ({self.max_lag_s:g}) must be above segment_s ({self.segment_s:g})")
        return self

    @property
    def segment_bytes(self) -> int:
        return self.segment_mib << 20
