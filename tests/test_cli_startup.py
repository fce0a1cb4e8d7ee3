"""Commands that need no bucket start without botocore, awscrt or aiohttp.

Importing boto3 alone costs about a tenth of a second; `offload --help` and the
CI checks (`check-bucket`, `lint-buckets`, `settings`) run often and touch no
storage, so they must not pay it. Each command runs in a fresh interpreter,
since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("botocore", "boto3", "awscrt", "aiohttp")

PROBE = """
import contextlib, io, json, sys
from offload.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["settings"],
        ["check-bucket", "media-example-com"],
        ["lint-buckets", "FOLDER"],
    ],
)
def test_fast_commands_import_no_storage_or_server_library(argv: list[str], tmp_path: Path):
    (tmp_path / "deploy.sh").write_text("aws s3 cp photo.jpg s3://media-bucket/\n")
    argv = [str(tmp_path) if arg == "FOLDER" else arg for arg in argv]
    probe = PROBE.replace("json.loads(HEAVY)", repr(json.dumps(HEAVY)).join(["json.loads(", ")"]))
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer == {"code": 0, "heavy": []}
