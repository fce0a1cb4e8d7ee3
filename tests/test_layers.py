"""The package map holds: each group imports only the groups below it, and nothing cycles.

Every import counts, including those inside functions and under
``TYPE_CHECKING``: a cycle hidden in a function is still a cycle for a reader.
The layers, top to bottom (siblings in one row never import each other):

    cli
    server
    media | buckets
    images
    sync
    purge
    manifest
    config
    storage
    http
    errors | keys

``images`` sits below ``media`` (a deletion takes an original's variants with it) and
above ``sync`` (a sync's deletions do too, through its reporter). ``buckets`` sits
above ``sync`` because archives and the layout check read a
sync location (``offload.sync.locations.Bucket``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "offload"

LAYERS: list[set[str]] = [
    {"cli"},
    {"server"},
    {"media", "buckets"},
    {"images"},
    {"sync"},
    {"purge"},
    {"manifest"},
    {"config"},
    {"storage"},
    {"http"},
    {"errors", "keys"},
]

#: The plain modules allowed beside the subpackages.
TOP_MODULES = {"__init__", "__main__", "errors", "keys"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def resolve(name: str) -> str:
    """The module an imported name lives in: ``offload.a.b.Thing`` -> ``offload.a.b``."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_in(source: str, package: str) -> Iterator[tuple[str, int]]:
    """Every offload module that ``source`` (a module of ``package``) imports, with the line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "offload":
                    yield resolve(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source_module = ".".join([*base, node.module] if node.module else base)
            else:
                source_module = node.module or ""
            if source_module.split(".")[0] != "offload":
                continue
            for alias in node.names:
                yield resolve(f"{source_module}.{alias.name}"), node.lineno


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def group_of(module: str) -> str | None:
    """The first name under ``offload`` (a subpackage or a top module), or None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rank(group: str) -> int:
    for index, row in enumerate(LAYERS):
        if group in row:
            return index
    raise AssertionError(f"offload.{group} is in no layer of tests/test_layers.py")


def graph() -> dict[str, set[str]]:
    return {
        module: {target for target, _ in imports_of(module) if target != module}
        for module in MODULES
    }


def test_offload_keeps_at_most_four_plain_modules_beside_its_subpackages() -> None:
    plain = {path.stem for path in PACKAGE.glob("*.py")}
    assert plain <= TOP_MODULES


def test_every_subpackage_and_top_module_has_a_layer() -> None:
    groups = {group_of(module) for module in MODULES} - {None, "__main__"}
    for group in groups:
        assert group is not None
        rank(group)


def test_each_group_imports_only_the_groups_below_it() -> None:
    wrong = []
    for module in MODULES:
        group = group_of(module)
        if group in (None, "__main__"):
            continue  # the package root (its version) and ``python -m offload``
        assert group is not None
        for target, line in imports_of(module):
            target_group = group_of(target)
            if target_group is None or target_group == group:
                continue  # offload.__version__, or within the group
            if rank(target_group) <= rank(group):
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_no_module_imports_itself_through_others() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert [" -> ".join(cycle) for cycle in cycles] == []


def test_sync_never_imports_the_server() -> None:
    assert not any(
        target.startswith("offload.server")
        for module in MODULES
        if module.startswith("offload.sync")
        for target, _ in imports_of(module)
    )


def test_imports_inside_functions_and_type_checking_blocks_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from offload.cli.environment import Environment\n"
        "def later():\n"
        "    from offload.server import supervisor\n"
        "    from . import state\n"
    )
    found = [module for module, _ in imports_in(source, "offload.sync")]
    assert found == ["offload.cli.environment", "offload.server.supervisor", "offload.sync.state"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("offload.cli")))
def test_library_modules_raise_no_cli_usage_error(module: str) -> None:
    """A usage error names a flag; only the command line knows its flags."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "offload.errors"
        for alias in node.names
    }
    if module == "offload.errors":
        return
    assert "UsageError" not in names


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("offload.cli")))
def test_library_errors_name_no_command_line_flag(module: str) -> None:
    """Only the command line knows its flags; a webhook's sync run has none."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    named = [
        f"line {node.lineno}: {node.value!r}"
        for raised in ast.walk(tree)
        if isinstance(raised, ast.Raise) and raised.exc is not None
        for node in ast.walk(raised.exc)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if FLAG.search(node.value)
    ]
    assert named == []
