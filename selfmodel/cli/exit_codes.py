"""Every exit code of the `selfmodel` command, in one place (docs/cli.md lists the same)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a batch, step or snapshot could not run (or a deletion was not confirmed)
    USAGE = 2  # a bad config, option or argument: nothing was written
    BUSY = 3  # another process holds the warehouse
    BLOCKED = 4  # a block-severity data-quality expectation fails
    AUDIT_FAILED = 5  # a snapshot failed its audit; the current one stays in service
    BAR_FAILED = 6  # an eval suite missed its bar or regressed
