"""`python -m common.chain`: the ledger's hash chain (docs/tamper-evidence.md).

extend                           link the transactions below the horizon, in small batches, until caught up
verify [--expect-head POS:HASH]  recompute every link from the rows; exit 1 naming the first problem

Both print JSON with the chain's head (position, transaction and hash): record it
somewhere the database's owner can't write, and pass it back to a later verify.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from common import bootstrap
from common.errors import LedgerError
from common.hash_chain import EXTEND_BATCH, extend, parse_head, verify


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _head_option(context: click.Context, parameter: click.Parameter, value: str | None) -> tuple[int, bytes] | None:
    if value is None:
        return None
    try:
        return parse_head(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.group()
def main() -> None:
    pass


@main.command("extend")
@click.option("--batch", default=EXTEND_BATCH, show_default=True, type=click.IntRange(1, 10_000))
def extend_command(batch: int) -> None:
    try:
        pacer = bootstrap.pacer()
        _print({**extend(bootstrap.chain_store(), batch, pacer=pacer), "pacing": pacer.report()})
    except LedgerError as error:
        raise click.ClickException(error.message) from error


@main.command("verify")
@click.option("--expect-head", metavar="POSITION:HASH", callback=_head_option, help="a head recorded earlier")
def verify_command(expect_head: tuple[int, bytes] | None) -> None:
    try:
        report = verify(bootstrap.chain_store(), expect_head)
    except LedgerError as error:
        raise click.ClickException(error.message) from error
    _print(report)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
