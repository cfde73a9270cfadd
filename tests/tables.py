"""Comparing database tables with ground truth, shared by the job tests."""

from __future__ import annotations

from typing import Any

import pandas as pd


def normalise(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain Python values: ints, strings, naive datetimes, dates, None."""
    rows = []
    for row in frame.itertuples(index=False):
        values: list[Any] = []
        for value in row:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                values.append(None)
            elif isinstance(value, pd.Timestamp):
                values.append(value.to_pydatetime().replace(tzinfo=None))
            elif hasattr(value, "item"):
                values.append(value.item())
            else:
                values.append(value)
        rows.append(tuple(values))
    return rows
