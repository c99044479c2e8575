"""The command line's layout holds: one module imports Prefect and flows, one enum holds the exit codes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from selfmodel.cli import main
from selfmodel.cli.exit_codes import ExitCode
from tests.conftest import REPO_ROOT

CLI = REPO_ROOT / "selfmodel" / "cli"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_prefect_runtime_imports_prefect_or_the_flows() -> None:
    importers = {path.name for path in CLI.glob("*.py")
                 if any(name.split(".")[0] in ("prefect", "flows") for name in imported_modules(path))}
    assert importers == {"prefect_runtime.py"}


def test_exit_codes_are_written_once() -> None:
    """No command module spells an exit code as a number or keeps its own constant."""
    for path in CLI.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"sys\.exit\(\s*\d", text), path
        if path.name != "exit_codes.py":
            assert not re.search(r"^EXIT_\w+ = ", text, re.M), path
    assert [code.value for code in ExitCode] == list(range(7))


def test_help_starts_without_importing_prefect_or_duckdb_work() -> None:
    code = ("import sys; from selfmodel.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'flows', 'great_expectations', "
            "'pyarrow', 'openai'}))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=REPO_ROOT).stdout
    assert shown.strip().splitlines()[-1] == "[]"


def test_a_bad_timestamp_is_the_same_error_for_every_command(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nsources: []\n")
    for command in (["nightly", "--as-of", "yesterday"], ["refresh", "--as-of", "yesterday"],
                    ["eval", "--as-of", "yesterday"], ["beliefs", "u1", "--as-of", "yesterday"]):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert result.exit_code == ExitCode.USAGE, (command, result.output)
        assert "'yesterday' is not an ISO-8601 time such as 2018-09-01" in result.output, command
