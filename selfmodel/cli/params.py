"""Option types shared by the commands: the one timestamp parser and a float range that refuses nan."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import click

# Bounds of numeric options: generous for any real use, far below what DuckDB (BIGINT) or timedelta hold.
MAX_EXAMPLE_RECORDS = 1_000_000
MAX_BELIEFS_USED = 10_000
MAX_DAYS_BETWEEN_NIGHTS = 366


class Timestamp(click.ParamType):
    """ISO-8601 time; without a zone it is UTC."""

    name = "timestamp"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time such as 2018-09-01 or 2018-09-01T12:00:00Z", param, ctx)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        try:
            parsed.astimezone(timezone.utc)  # the warehouse works in UTC: 0001-01-01T00:00+01:00 has no UTC time
        except OverflowError:
            self.fail(f"{value!r} is out of range: it has no UTC time between years 1 and 9999", param, ctx)
        return parsed


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan, which every comparison with a bound lets through."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number
