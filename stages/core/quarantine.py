"""The quarantine table: every row a stage removes, with a reason code, and the row accounting check."""

from __future__ import annotations

import logging

import pandas as pd

from stages.core.errors import RowAccountingError

logger = logging.getLogger(__name__)

REASON = "quarantine_reason"
DETAIL = "quarantine_detail"
STAGE = "quarantine_stage"


class Quarantine:
    """Collects removed rows per reason for one stage."""

    def __init__(self, stage: str):
        self.stage = stage
        self._parts: list[pd.DataFrame] = []

    def add(self, rows: pd.DataFrame, reason: str, detail: pd.Series | str | None = None) -> None:
        """Record `rows` as removed for `reason`; `detail` is one string or one value per row."""
        if rows.empty:
            return
        part = rows.copy()
        part[REASON] = reason
        if detail is None:
            part[DETAIL] = ""
        elif isinstance(detail, str):
            part[DETAIL] = detail
        else:
            part[DETAIL] = detail.reindex(rows.index).fillna("").astype(str).to_numpy()
        part[STAGE] = self.stage
        self._parts.append(part)
        logger.info("%s: quarantined %d rows (%s)", self.stage, len(rows), reason)

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def counts(self) -> dict[str, int]:
        """Return the number of quarantined rows per reason code."""
        counts: dict[str, int] = {}
        for part in self._parts:
            reason = str(part[REASON].iloc[0])
            counts[reason] = counts.get(reason, 0) + len(part)
        return dict(sorted(counts.items()))

    def frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Return all quarantined rows as one table; `columns` fixes the row columns when empty."""
        if not self._parts:
            base = list(columns or [])
            return pd.DataFrame({name: pd.Series(dtype="object") for name in [*base, REASON, DETAIL, STAGE]})
        frame = pd.concat(self._parts, ignore_index=True)
        return frame

    def check(self, rows_in: int, rows_out: int) -> None:
        """Raise RowAccountingError unless rows in = rows out + rows quarantined."""
        if rows_in != rows_out + len(self):
            raise RowAccountingError(self.stage, rows_in, rows_out, len(self))
