"""The docs build with `mkdocs build --strict` (a broken link fails), the flags' table and the API
reference are generated, and the README stays a front door whose links lead somewhere."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_docs_build_strict_with_the_flags_and_the_api_generated(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a warning of the build
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    flags = (site / "flags" / "index.html").read_text()
    assert "--batch-size N" in flags and "<!-- flags -->" not in flags  # the table, from Config via the parser
    assert "--loss NAME" in flags
    api = (site / "api" / "index.html").read_text()
    assert 'id="gantui.run.loop.Run.log"' in api and 'id="gantui.run.api.init"' in api
    assert "Numbers for the curves" in api  # run.log's docstring


def test_the_readme_is_short_and_its_relative_links_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not link.startswith(("http://", "https://", "#", "mailto:"))]
    assert relative
    missing = [link for link in relative if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, missing
