"""Two plan sections about archived backups: how a restore thaws them (`restore:`) and what storage costs
(`prices:`).

    restore:
      retrieval: standard      # expedited | standard | bulk: how fast (and dear) a thaw from Glacier is
      thaw_days: 3             # days a thawed copy stays readable (the drill reads it the day after the thaw)
      thaw_wait_h: 12          # how long a restore waits for a thaw before it fails, naming key and retrieval
    prices:                    # only what differs from the defaults below (AWS us-east-1 list prices)
      storage_gb_month: {STANDARD: 0.025, GLACIER: 0.0045}

The defaults are AWS's public list prices for us-east-1, dated by PRICES_AS_OF; a plan for another region or
store gives its own. They feed the cost table and the tier lint of `flows.retention --dry-run`, and the cost
line of a thaw.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mongobackup.glacier import RETRIEVALS, Retrieval

GIB = 1 << 30

#: When the default prices below were read off https://aws.amazon.com/s3/pricing/ (us-east-1, first 50 TB).
PRICES_AS_OF = "2025-06"

DEFAULT_STORAGE_GB_MONTH: dict[str, float] = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}
#: Per GB thawed (GLACIER_IR: per GB read; it needs no thaw). Bulk thaws from GLACIER are free.
DEFAULT_RETRIEVAL_GB: dict[str, dict[str, float]] = {
    "GLACIER": {"expedited": 0.03, "standard": 0.01, "bulk": 0.0},
    "DEEP_ARCHIVE": {"standard": 0.02, "bulk": 0.0025},
    "GLACIER_IR": {"standard": 0.03},
}
#: Per thaw request (AWS prices them per 1,000: $10, $0.05, $0 for GLACIER; $0.10, $0.025 for DEEP_ARCHIVE).
DEFAULT_RETRIEVAL_REQUEST: dict[str, dict[str, float]] = {
    "GLACIER": {"expedited": 0.01, "standard": 0.00005, "bulk": 0.0},
    "DEEP_ARCHIVE": {"standard": 0.0001, "bulk": 0.000025},
}


class RestorePlan(BaseModel):
    """How a restore thaws an archived backup (GLACIER, DEEP_ARCHIVE) before reading it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: standard: 3-5 h from GLACIER at $0.01/GB; expedited: minutes at $0.03/GB; bulk: 5-12 h, free.
    retrieval: Retrieval = "standard"
    #: Days the thawed copy stays readable (billed as STANDARD meanwhile): the drill's thaw runs a day ahead.
    thaw_days: int = Field(default=3, ge=1, le=365)
    #: Hours a restore waits for its thaw before it fails; 0 asks and fails at once unless already thawed.
    thaw_wait_h: float = Field(default=12.0, ge=0, le=24 * 14)
    #: Seconds between two looks (HEAD) at a thaw under way.
    thaw_poll_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("retrieval", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class PricePlan(BaseModel):
    """Storage and retrieval prices (USD unless `currency` says otherwise); missing entries take the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: str = PRICES_AS_OF
    region: str = "us-east-1"
    currency: str = "USD"
    #: Per GB (2^30 bytes) and month, by storage class.
    storage_gb_month: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_STORAGE_GB_MONTH))
    #: Per GB thawed, by storage class and retrieval tier.
    retrieval_gb: dict[str, dict[str, float]] = Field(default_factory=lambda: _copy(DEFAULT_RETRIEVAL_GB))
    #: Per thaw request, by storage class and retrieval tier.
    retrieval_request: dict[str, dict[str, float]] = Field(default_factory=lambda: _copy(DEFAULT_RETRIEVAL_REQUEST))

    @field_validator("storage_gb_month")
    @classmethod
    def _storage_defaults(cls, given: dict[str, float]) -> dict[str, float]:
        _no_negative(given)
        return {**DEFAULT_STORAGE_GB_MONTH, **{name.upper(): price for name, price in given.items()}}

    @field_validator("retrieval_gb", "retrieval_request")
    @classmethod
    def _retrieval_defaults(
        cls, given: dict[str, dict[str, float]], info: ValidationInfo
    ) -> dict[str, dict[str, float]]:
        defaults = DEFAULT_RETRIEVAL_GB if info.field_name == "retrieval_gb" else DEFAULT_RETRIEVAL_REQUEST
        merged = _copy(defaults)
        for name, tiers in given.items():
            unknown = sorted(set(tiers) - set(RETRIEVALS))
            if unknown:
                raise ValueError(
                    f"{name}: unknown retrieval tier {', '.join(unknown)} (expected {', '.join(RETRIEVALS)})"
                )
            _no_negative(tiers)
            merged.setdefault(name.upper(), {}).update(tiers)
        return merged

    def storage(self, storage_class: str | None) -> float:
        """Per GB-month of a class; an unknown class (a store's own) is priced as STANDARD."""
        table = self.storage_gb_month
        return table.get(storage_class or "STANDARD", table["STANDARD"])

    def thaw_cost(self, storage_class: str, retrieval: Retrieval, size_bytes: int) -> float | None:
        """What thawing one object costs (retrieval per GB plus the request); None when no price is known."""
        per_gb = self.retrieval_gb.get(storage_class, {}).get(retrieval)
        if per_gb is None:
            return None
        request = self.retrieval_request.get(storage_class, {}).get(retrieval, 0.0)
        return per_gb * size_bytes / GIB + request

    def money(self, amount: float) -> str:
        """`$0.0177` / `1.20 EUR`: enough digits for the small sums of one backup."""
        digits = 2 if abs(amount) >= 1 else 4
        return f"${amount:,.{digits}f}" if self.currency == "USD" else f"{amount:,.{digits}f} {self.currency}"


def _copy(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: dict(tiers) for name, tiers in table.items()}


def _no_negative(prices: dict[str, float]) -> None:
    bad = [f"{name}={price}" for name, price in prices.items() if price < 0]
    if bad:
        raise ValueError(f"prices cannot be negative: {', '.join(bad)}")
