"""The `selfmodel` command group: loads the config once per invocation, on first use."""

from __future__ import annotations

import click

from selfmodel.settings import Settings, load_settings
from selfmodel.terminal import PrintableFormatter


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: $SELFMODEL_CONFIG, else ./selfmodel.yaml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Build per-user self-models from interaction logs: ingest, refresh beliefs, evaluate, publish, serve."""
    cache: dict[str, Settings] = {}

    def loader() -> Settings:
        if "settings" not in cache:
            cache["settings"] = load_settings(config_path)
        return cache["settings"]

    ctx.obj = {"settings_loader": loader}
    _printable_last_resort_logs()


def _printable_last_resort_logs() -> None:
    """With no logging configured, Python prints WARNING records raw on stderr (logging.lastResort): the
    same, through printable, so a warning quoting a file name cannot act on the terminal."""
    import logging

    if logging.lastResort is not None:  # it writes to whatever sys.stderr is at the time
        logging.lastResort.setFormatter(PrintableFormatter())
