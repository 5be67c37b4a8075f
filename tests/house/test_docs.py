"""The documentation: the mkdocs site builds with --strict (every link and anchor resolves) and its generated
reference pages cover what they describe; the README stays a short front page without a lab notebook's
history; and the getting-started page's shell blocks that are marked to run do run.

A shell block on docs/getting-started.md is marked by the HTML comment on the line above its fence:
`<!-- docs-test: run -->` or `<!-- docs-test: skip: why -->`. Every ```bash block must carry one. Marked
blocks run with bash from the repository root, offline, with the venv's `featstore` first on PATH and
FEATSTORE_WAREHOUSE pointing at a temporary warehouse created empty, as `make run` would leave one before its
first step; the commands must exit 0 and must leave ./warehouse alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCS = ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
README_MAX_LINES = 200
# What a lab notebook leaves behind: measurement rounds, sessions, commit hashes.
HISTORY = re.compile(r"round [0-9]|this session|(commit|on) [0-9a-f]{7}\b|round-1|round 1|round 2", re.IGNORECASE)
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(run|skip)\b[^>]*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def doc_pages() -> list[Path]:
    """The site's Markdown pages: every .md under docs/ except folder READMEs (mkdocs.yml excludes them)."""
    return sorted(p for p in DOCS.rglob("*.md") if p.name != "README.md")


def offline_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1", **extra}


# -- the site ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def page_text(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


def test_site_builds_strict_with_every_page(site):
    assert (site / "index.html").is_file()
    for md in doc_pages():
        rel = md.relative_to(DOCS).with_suffix("")
        built = site / (rel.parent if rel.name == "index" else rel) / "index.html"
        assert built.is_file(), f"{md} was not built"
    assert not (site / "hooks.py").exists(), "the hook module is not a page or an asset"


def test_cli_reference_lists_every_command(site):
    import click

    from cli import main

    def walk(group: click.Group, prefix: str):
        for name, command in group.commands.items():
            yield f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from walk(command, f"{prefix} {name}")

    text = page_text(site, "cli")
    missing = [c for c in walk(main, "featstore") if f'id="{c.replace(" ", "-")}"' not in text]
    assert not missing, f"the CLI reference lacks {missing}"


def test_experiment_keys_are_generated_from_the_parser(site):
    from featstore.pipeline.experiment import SCHEDULE_KEYS, SHAPE_KEYS
    from featstore.saes.presets import TrainSettings

    text = page_text(site, "experiments")
    assert "generated: experiment-keys" not in text
    for key in (*SHAPE_KEYS, *SCHEDULE_KEYS, "parents", "doc_tokens", "r_floor", "eval_tokens", "slices",
                *(f for f in TrainSettings.__dataclass_fields__ if f != "options")):
        assert f"<code>{key}</code>" in text, f"experiment key {key} missing from the generated reference"


def test_schema_page_has_every_object_with_its_current_columns(site, tmp_path):
    from featstore.warehouse import Warehouse, schema, sql_dir

    text = page_text(site, "schema")
    assert "generated: schema" not in text
    wh = Warehouse(tmp_path / "wh")
    wh.create()
    docs = schema.load_docs(sql_dir())
    for name in docs:
        assert f'id="{name}"' in text, f"{name} has no section on the schema page"
    # a table changed by a later migration shows the columns it has now
    columns = wh.query("SELECT table_name, column_name FROM duckdb_columns() WHERE table_name = 'saes'").to_pylist()
    section = text[text.index('id="saes"'):text.index('id="scores"')]
    for row in columns:
        assert f"<code>{row['column_name']}</code>" in section, f"saes.{row['column_name']} missing"


# -- the README and the history -------------------------------------------------------------------------


def test_readme_is_a_short_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_no_measurement_history_in_readme_or_docs():
    found = []
    for path in [ROOT / "README.md", *doc_pages()]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if HISTORY.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "history wording (rounds, sessions, commit hashes):\n" + "\n".join(found)


# -- the getting-started page's commands ----------------------------------------------------------------


def shell_blocks(path: Path) -> list[tuple[int, str | None, str]]:
    """(line number, 'run', 'skip' or None when unmarked, text) of every ```bash block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or not fence[2]:
            i += 1
            continue
        indent, language, start = fence[1], fence[2], i
        i += 1
        body = []
        while i < len(lines) and not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i][len(indent):])
            i += 1
        i += 1
        if language != "bash":
            continue
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(above)
        blocks.append((start + 1, marker[1] if marker else None, "\n".join(body)))
    return blocks


BLOCKS = shell_blocks(GETTING_STARTED)
RUN = [(line, text) for line, kind, text in BLOCKS if kind == "run"]


def test_every_getting_started_block_is_marked_and_some_run():
    unmarked = [line for line, kind, _ in BLOCKS if kind is None]
    assert not unmarked, f"getting-started.md lines {unmarked}: mark each bash block <!-- docs-test: run --> or " \
                         "<!-- docs-test: skip: why -->"
    assert len(RUN) >= 2 and len(BLOCKS) > len(RUN)


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory) -> Path:
    from featstore.warehouse import Warehouse

    root = tmp_path_factory.mktemp("docs-warehouse") / "wh"
    Warehouse(root).create()
    return root


@pytest.mark.parametrize("line, text", RUN, ids=[f"line-{line}" for line, _ in RUN])
def test_getting_started_block_runs(line, text, empty_warehouse, tmp_path):
    assert (BIN / "featstore").is_file(), f"no featstore script beside {sys.executable}; pip install -e ."
    local = ROOT / "warehouse" / "featstore.duckdb"
    before = local.stat().st_mtime_ns if local.exists() else None
    env = offline_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", FEATSTORE_WAREHOUSE=str(empty_warehouse),
                      TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, f"getting-started.md:{line} failed:\n{text}\n{result.stdout}\n{result.stderr}"
    after = local.stat().st_mtime_ns if local.exists() else None
    assert after == before, "a documented command wrote ./warehouse instead of FEATSTORE_WAREHOUSE"
