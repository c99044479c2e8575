"""The reference says what the code does: every command and its options, every exit code and every
quarantine reason are documented under docs/, and the links between the pages resolve."""

from __future__ import annotations

import re

import click
import pytest

from selfmodel.cli import main
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.quarantine import QUARANTINE_REASONS
from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
CLI_DOC = DOCS / "cli.md"


def command_sections() -> dict[str, str]:
    """`### \\`selfmodel NAME\\`` heading -> the text up to the next heading of that level or above."""
    text = CLI_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    sections = {}
    for heading, body in zip(parts[1::2], parts[2::2]):
        found = re.fullmatch(r"### `selfmodel ([a-z-]+)`", heading.strip())
        if found:
            sections[found.group(1)] = body
    return sections


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_and_each_of_its_options_is_in_the_command_reference(name: str) -> None:
    sections = command_sections()
    assert name in sections, f"docs/cli.md has no section for selfmodel {name}"
    for parameter in main.commands[name].params:
        if isinstance(parameter, click.Option) and parameter.name != "help":
            longest = max(parameter.opts, key=len)
            assert longest in sections[name], f"selfmodel {name}: {longest} is not documented"


def test_the_reference_documents_no_command_that_does_not_exist() -> None:
    assert set(command_sections()) == set(main.commands)


def test_every_exit_code_is_in_the_table() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \| `{code.name}` \|", text, re.M), code


def test_every_quarantine_reason_is_documented() -> None:
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS.glob("*.md"))
    missing = [reason for reason in QUARANTINE_REASONS if f"`{reason}`" not in text]
    assert not missing, missing


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


def test_links_between_the_pages_resolve() -> None:
    pages = [REPO_ROOT / "README.md", *DOCS.glob("*.md")]
    for page in pages:
        for target, anchor in re.findall(r"\]\(((?:docs/)?[\w./-]*\.md)?(?:#([\w-]+))?\)",
                                         page.read_text(encoding="utf-8")):
            if not target and not anchor:
                continue
            linked = (page.parent / target).resolve() if target else page
            assert linked.exists(), (page.name, target)
            if anchor:
                assert anchor in anchors(linked.read_text(encoding="utf-8")), (page.name, target, anchor)
