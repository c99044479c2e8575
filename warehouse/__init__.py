"""The DuckDB warehouse: connections, migrations and the SQL files the code runs by name."""
