"""selfmodel: per-user beliefs built from interaction logs, with the data, evals and snapshots to trust them."""
