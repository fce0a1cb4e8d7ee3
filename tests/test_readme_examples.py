"""Every shell example the README marks runnable runs as written, against a live server.

How the README marks its shell blocks (each ```` ```sh ```` fence comes right
after one of these HTML comments, which a rendered README does not show):

- ``<!-- runnable -->``: the block is run by this test.
- ``<!-- not run: REASON -->``: the block needs what a test machine lacks (S3
  credentials, sudo, a WordPress tree, the network) or runs until stopped.

A ``sh`` block with neither fails :func:`test_every_shell_block_says_whether_it_runs`,
so a new example cannot slip past unrun by accident.

The runnable blocks run in README order with ``bash -eo pipefail`` in one fresh
temporary folder, as a reader following the README would, while ``offload serve``
(no configuration: the embedded default) runs in that folder on a free loopback
port. The only change made to a block is the port: ``8080`` becomes the free one.
Each block must exit 0. A comment line ``#> TEXT`` in a block shows output the
command before it prints; the block's standard output must contain each such
``TEXT``, in order, so what the README claims is checked too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from offload.config.embedded import embedded_settings
from offload.config.settings import Settings
from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_PORT = "8080"
MARKER = re.compile(r"<!--\s*(runnable|not run:\s*(?P<reason>.+?))\s*-->")
EXPECTED = re.compile(r"^\s*#>\s?(?P<text>.*)$")
BLOCK_SECONDS = 60  # a bound for a hung block, far above what any takes
TOOLS = ("bash", "curl", "openssl", "head")  # what the runnable blocks call besides offload


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    marker: str | None  # "runnable", "not run: ...", or None
    code: str

    @property
    def runnable(self) -> bool:
        return self.marker == "runnable"

    def expected_output(self) -> list[str]:
        return [m["text"] for line in self.code.splitlines() if (m := EXPECTED.match(line))]


def shell_blocks(text: str) -> list[Block]:
    """The README's ``sh`` blocks, each with the marker on the line before its fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        if not fence.startswith("```"):
            index += 1
            continue
        language = fence[3:].strip()
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if language in ("sh", "bash", "shell", "console"):
            previous = lines[index - 1].strip() if index else ""
            match = MARKER.fullmatch(previous)
            marker = match.group(1) if match else None
            blocks.append(Block(index + 1, marker, "\n".join(lines[index + 1 : end]) + "\n"))
        index = end + 1
    return blocks


BLOCKS = shell_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [block for block in BLOCKS if block.runnable]


def test_every_shell_block_says_whether_it_runs():
    unmarked = [block.line for block in BLOCKS if block.marker is None]
    assert not unmarked, (
        f"README.md: the sh blocks at lines {unmarked} need <!-- runnable --> "
        "or <!-- not run: REASON --> on the line before the fence"
    )


def test_the_readme_has_runnable_webhook_examples_json_and_multipart():
    webhooks = [block for block in RUNNABLE if "/_offload/default/uploads" in block.code]
    assert any("application/json" in block.code for block in webhooks)
    assert any("multipart/form-data" in block.code for block in webhooks)
    assert all("openssl dgst -sha256 -hmac" in block.code for block in webhooks)


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str], int]]:
    """A fresh folder with ``offload serve`` running in it, and the shell's environment."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"the README's examples need {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("readme-reader")
    bin_dir = tmp_path_factory.mktemp("readme-bin")
    # ``offload`` as the README calls it, whether or not the package's script is on PATH.
    shim = bin_dir / "offload"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m offload "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "AWS_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["HOME"] = str(folder)  # no ~/.aws or ~/.cache of the machine's user
    port = free_port()
    log = folder.parent / f"{folder.name}.serve.log"  # outside the reader's folder
    with log.open("w", encoding="utf-8") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "offload", "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        yield folder, env, port
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"README.md:{b.line}" for b in RUNNABLE])
def test_a_runnable_readme_block_runs_as_written(block: Block, reader):
    folder, env, port = reader
    code = block.code.replace(README_PORT, str(port))
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )
    where = f"README.md:{block.line}"
    assert result.returncode == 0, f"{where} exited {result.returncode}:\n{result.stderr}"
    at = 0
    for text in block.expected_output():
        found = result.stdout.find(text, at)
        assert found >= 0, f"{where}: {text!r} not in the output after {at}:\n{result.stdout}"
        at = found + len(text)


def test_the_embedded_default_reads_uploads_from_a_folder_beside_its_data(tmp_path):
    embedded = embedded_settings(Settings(), tmp_path / "offload-data")
    assert embedded.uploads_dir == tmp_path / "uploads"
    assert embedded.uploads_dir.is_dir()
    assert embedded.settings.sites["default"].uploads_dir == tmp_path / "uploads"


def test_the_start_up_banner_names_the_uploads_folder(reader):
    folder, _env, _port = reader
    banner = (folder.parent / f"{folder.name}.serve.log").read_text(encoding="utf-8")
    assert f"uploads:  {folder.resolve() / 'uploads'}" in banner
