"""Prefect flows: thin wiring over the domain code in selfmodel/ (one module per flow).

Importing any of them prepares this process's Prefect the same way, however the flow is run (`selfmodel
nightly`, `selfmodel ingest --prefect`, a worker, a plain script): a temporary Prefect server started here
dies with this process, `kill -9` included (selfmodel.prefect_server).
"""

from selfmodel.prefect_server import watch_temporary_server

watch_temporary_server()
