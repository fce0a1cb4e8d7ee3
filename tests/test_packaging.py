"""A plain `pip install .` works: the wheel carries the templates it loads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from offload import __version__

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "offload-data",
)


def run(*argv: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_renders_a_template(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", ".", cwd=source)
    wheel = next((tmp_path / "dist").glob("offload-*.whl"))

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"  # not the source tree: only the installed copy is importable
    elsewhere.mkdir()
    assert run(venv / "bin" / "offload", "--version", cwd=elsewhere).strip() == (
        f"offload {__version__}"
    )
    location = run(
        python,
        "-c",
        "from offload.config.render import templates_dir; print(templates_dir())",
        cwd=elsewhere,
    ).strip()
    assert Path(location).is_relative_to(venv), location
    example = run(venv / "bin" / "offload", "settings", "--example", cwd=elsewhere)
    assert "[sites.blog]" in example


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the [test] extra"
    folders = [name for name in ("offload", "tests", "bench") if (ROOT / name).is_dir()]
    run(ruff, "check", *folders, cwd=ROOT)
