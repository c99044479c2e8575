"""The `selfmodel` command line. Commands call the domain code directly (no Prefect server is started);
the flows in flows/ wrap the same code for deployments and the nightly run.

One module per area of commands; `render` prints, `prefect_runtime` is the only one importing Prefect,
`exit_codes` holds every exit code, `params` the option types.
"""

from selfmodel.cli.app import main
from selfmodel.cli import beliefs, evals, ingest, runs, snapshots  # noqa: F401  (each registers its commands)

__all__ = ["main"]
