"""expand_path: which files a source's `path` names, each real file once, whatever links lead to it."""

from __future__ import annotations

import os
from pathlib import Path

from selfmodel.sources.base import expand_path

JSONL = ("*.jsonl",)


def names(paths: list[Path], root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


def test_a_glob_through_a_symlink_loop_lists_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "logs" / "day1").mkdir(parents=True)
    (tmp_path / "logs" / "day1" / "a.jsonl").write_text("{}\n")
    (tmp_path / "logs" / "b.jsonl").write_text("{}\n")
    os.symlink("..", tmp_path / "logs" / "day1" / "up")  # day1/up/day1/up/... never ends

    found = expand_path(tmp_path / "logs" / "**" / "*.jsonl", JSONL)

    assert names(found, tmp_path) == ["logs/b.jsonl", "logs/day1/a.jsonl"]


def test_two_symlink_loops_are_walked_once_not_exponentially(tmp_path: Path) -> None:
    # Two links to the parent in each folder: glob.glob walks 2^40 paths before the kernel stops it.
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text("{}\n")
    os.symlink(".", tmp_path / "logs" / "here")
    os.symlink(".", tmp_path / "logs" / "again")

    found = expand_path(tmp_path / "logs" / "**" / "*.jsonl", JSONL)

    assert names(found, tmp_path) == ["logs/a.jsonl"]


def test_a_folder_linked_in_twice_and_links_to_one_file_list_it_once(tmp_path: Path) -> None:
    (tmp_path / "logs" / "real").mkdir(parents=True)
    (tmp_path / "logs" / "real" / "a.jsonl").write_text("{}\n")
    os.symlink("real", tmp_path / "logs" / "alias")  # the same folder under another name
    os.symlink("a.jsonl", tmp_path / "logs" / "real" / "z-link.jsonl")
    os.link(tmp_path / "logs" / "real" / "a.jsonl", tmp_path / "logs" / "real" / "hard.jsonl")
    (tmp_path / "logs" / "real" / "other.jsonl").write_text("{}\n")

    from_glob = expand_path(tmp_path / "logs" / "*" / "*.jsonl", JSONL)
    from_folder = expand_path(tmp_path / "logs" / "real", JSONL)

    # The first path in sorted order keeps each file.
    assert names(from_glob, tmp_path) == ["logs/alias/a.jsonl", "logs/alias/other.jsonl"]
    assert names(from_folder, tmp_path) == ["logs/real/a.jsonl", "logs/real/other.jsonl"]


def test_a_glob_follows_links_to_folders_and_skips_hidden_ones_as_glob_does(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jsonl").write_text("{}\n")
    (tmp_path / "logs" / ".hidden").mkdir(parents=True)
    (tmp_path / "logs" / ".hidden" / "h.jsonl").write_text("{}\n")
    (tmp_path / "logs" / ".dot.jsonl").write_text("{}\n")
    (tmp_path / "logs" / "y.jsonl").write_text("{}\n")
    (tmp_path / "logs" / "y.jsonl.bak").write_text("{}\n")
    os.symlink(tmp_path / "elsewhere", tmp_path / "logs" / "linked")
    (tmp_path / "logs" / "unreadable").mkdir(mode=0)

    found = expand_path(tmp_path / "logs" / "**" / "*.jsonl", JSONL)

    assert names(found, tmp_path) == ["logs/linked/x.jsonl", "logs/y.jsonl"]
