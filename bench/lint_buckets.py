"""How fast ``lint_paths`` reads a 10,000-file tree, against ``grep -rE`` over the same tree.

    python bench/lint_buckets.py [--files 10000] [--repeat 3]

The tree is generated in a temporary folder (fixed seed): shell scripts,
Markdown, Terraform, CloudFormation YAML and JSON, IAM policies, PHP and Python
settings, .env files and offload.toml, plus files with no bucket at all (HTML,
JavaScript, CSS) as most of a real repository is. grep only finds lines that
might hold a name; the linter also extracts, judges and places every name, so
the ratio is the price of doing the job rather than a like-for-like race. Each
side runs ``--repeat`` times after one warm-up run; the best time counts.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from offload.buckets.lint import lint_paths

GREP_PATTERN = "s3://|arn:aws:s3:::|BucketName|BUCKET"

FILLER = [
    "# routine configuration line with nothing of interest in it",
    "echo 'deploying the site' && sleep 1",
    "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>",
    "const size = items.reduce((a, b) => a + b.size, 0);",
    "  margin: 0 auto; padding: 1rem 2rem; color: #333;",
]


def bucket(rng: random.Random) -> str:
    name = rng.choice(["media", "assets", "backups", "uploads", "static"])
    style = rng.random()
    if style < 0.1:
        return f"{name.title()}_Prod"  # invalid
    if style < 0.2:
        return f"{name}.example.com"  # dotted
    return f"{name}-{rng.randrange(1000)}"


def content(kind: str, rng: random.Random) -> str:
    b = bucket(rng)
    body = {
        "sh": f"#!/bin/sh\nexport S3_BUCKET={b}\naws s3 sync ./out s3://{b}/site --delete\n"
        "aws s3 cp x s3://${S3_BUCKET}/x\n",
        "md": f"# Notes\n\nThe originals live in `s3://{b}/originals`.\n",
        "tf": f'resource "aws_s3_bucket" "m" {{\n  bucket = "{b}"\n  tags = {{ A = "b" }}\n}}\n'
        'resource "aws_s3_bucket_policy" "p" {\n  bucket = var.bucket\n}\n',
        "yaml": f"Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n"
        f"      BucketName: {b}\n  R:\n    Properties:\n      BucketName: !Ref X\n",
        "json": '{"Statement": [{"Effect": "Allow", "Resource": '
        f'["arn:aws:s3:::{b}", "arn:aws:s3:::{b}/*"]}}]}}\n',
        "php": f"<?php\ndefine('AS3CF_BUCKET', '{b}');\n$settings['s3_bucket'] = '{b}';\n",
        "py": f'AWS_STORAGE_BUCKET_NAME = "{b}"\nDEBUG = False\n',
        "env": f"S3_BUCKET={b}\nAWS_BUCKET_NAME=${{ENV}}-media\n",
        "toml": f'[sites.blog]\nstorage = "s3://{b}/blog"\n',
        "html": "<!doctype html>\n<title>page</title>\n",
        "js": "export function f(x) { return x * 2; }\n",
        "css": "body { font: 16px/1.5 sans-serif; }\n",
    }[kind]
    filler = "\n".join(rng.choice(FILLER) for _ in range(rng.randrange(20, 80)))
    return body + filler + "\n"


KINDS = ["sh", "md", "tf", "yaml", "json", "php", "py", "env", "toml"] + ["html", "js", "css"] * 3


def make_tree(root: Path, files: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for index in range(files):
        kind = rng.choice(KINDS)
        folder = root / f"dir{index // 100:03d}"
        folder.mkdir(exist_ok=True)
        name = ".env" if kind == "env" else f"file{index:05d}.{kind}"
        if kind == "env":
            folder = folder / f"app{index:05d}"
            folder.mkdir()
        (folder / name).write_text(content(kind, rng), encoding="utf-8")


def best_of(repeat: int, run) -> float:
    run()  # warm-up: page cache, imports, regex compilation
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    grep = shutil.which("grep")
    with tempfile.TemporaryDirectory(prefix="offload-lint-bench-") as tmp:
        root = Path(tmp)
        make_tree(root, args.files)
        report = lint_paths([root])
        print(
            f"tree: {report.files} files, {len(report.findings)} bucket names "
            f"({sum(not f.valid for f in report.findings)} invalid), "
            f"{report.placeholders} placeholders"
        )
        ours = best_of(args.repeat, lambda: lint_paths([root]))
        print(f"offload lint_paths: {ours:.3f} s, {report.files / ours:,.0f} files/s")
        if grep is None:
            print("grep: not found, no comparison")
            return
        command = [grep, "-rE", GREP_PATTERN, str(root)]

        def run_grep() -> None:
            subprocess.run(command, stdout=subprocess.DEVNULL, check=False)

        theirs = best_of(args.repeat, run_grep)
        print(f"grep -rE '{GREP_PATTERN}': {theirs:.3f} s, {report.files / theirs:,.0f} files/s")
        print(f"ratio: offload takes {ours / theirs:.1f}x grep's time")


if __name__ == "__main__":
    main()
