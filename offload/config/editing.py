"""Reading and changing one setting of a config file, and writing a first one.

``offload config get | set | unset | init`` work here. A change goes through
tomlkit, which keeps the file's comments, blank lines and key order, where a
``tomllib`` read and a fresh write would lose them. A value is parsed with its
setting's kind, as an ``OFFLOAD_*`` variable is (``Kind.from_text``), and the
changed file is loaded with the same rules as at start-up before it replaces
the old one; a write is atomic (a temp file in the same folder, then a rename)
and keeps the file's mode, so a reader never sees half a file and a secret-
holding file stays private.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import Table

from offload.config.kinds import Secret
from offload.config.loading import load_settings
from offload.config.settings import SITE_NAME, Settings, Site, declared_fields
from offload.errors import ConfigError

#: A new config file holds a webhook secret: readable by its owner alone.
NEW_FILE_MODE = 0o600


class EditError(ValueError):
    """What was asked for is wrong (a key, a value): the command line makes it a usage error."""


@dataclass(frozen=True)
class KeyPath:
    """A dotted setting name resolved to its declaration: ``port`` or ``sites.blog.cdn_url``."""

    dotted: str
    site: str | None  # None: a global setting
    field: dataclasses.Field[Any]

    @property
    def name(self) -> str:
        return self.field.name


def resolve_key(dotted: str) -> KeyPath:
    """The declaration behind ``dotted``; an unknown one is a usage error with a suggestion."""
    global_fields = {f.name: f for f in declared_fields(Settings)}
    site_fields = {f.name: f for f in declared_fields(Site)}
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in global_fields:
        return KeyPath(dotted, None, global_fields[parts[0]])
    if len(parts) == 3 and parts[0] == "sites":
        site, name = parts[1], parts[2]
        if not SITE_NAME.fullmatch(site):
            raise EditError(f"{dotted}: a site name is 1-63 of a-z 0-9 - _, starting a-z or 0-9")
        if name in site_fields:
            return KeyPath(dotted, site, site_fields[name])
        hint = _close(name, list(site_fields), f"sites.{site}.")
        if name in global_fields:
            hint = f" ({name} is a global setting: use {name})"
        raise EditError(f"{dotted}: unknown setting{hint}")
    if len(parts) == 1 and parts[0] in site_fields:
        raise EditError(f"{dotted}: is a site setting: use sites.NAME.{dotted}")
    candidates = [*global_fields, *(f"sites.NAME.{n}" for n in site_fields)]
    raise EditError(f"{dotted}: unknown setting{_close(dotted, candidates, '')}")


def _close(name: str, candidates: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def env_variable(key: KeyPath) -> str:
    """The ``OFFLOAD_*`` variable that overrides ``key``, as the loader maps them."""
    if key.site is None:
        return f"OFFLOAD_{key.name.upper()}"
    return f"OFFLOAD_SITES__{key.site.upper().replace('-', '_')}__{key.name.upper()}"


# -- get ---------------------------------------------------------------------------


def effective_value(settings: Settings, key: KeyPath) -> Any:
    """The value offload runs with (file, environment, default); a missing site is an error."""
    if key.site is None:
        return getattr(settings, key.name)
    if key.site not in settings.sites:
        sites = ", ".join(settings.sites) or "none"
        raise EditError(f"{key.dotted}: no site {key.site!r}; the sites are {sites}")
    return getattr(settings.sites[key.site], key.name)


def show_plain(key: KeyPath, value: Any, *, reveal: bool = False) -> str | None:
    """A value as a script wants it: strings bare, the rest as TOML; None when unset."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.reveal() if reveal else str(value)
    shown = key.field.metadata["kind"].show(value)
    if shown.startswith('"'):
        parsed = tomllib.loads(f"v = {shown}")["v"]
        return str(parsed)
    return str(shown)


# -- set and unset ----------------------------------------------------------------


def read_value(key: KeyPath, text: str, base: Path) -> Any:
    """The TOML value to write for ``text``, checked with the setting's kind.

    ``text`` is read as an ``OFFLOAD_*`` variable would be (``9000`` an integer,
    ``a,b`` a list, ``yes`` true); a list may also be a TOML array. A bad value is
    a usage error naming the key; a secret's value is never repeated.
    """
    kind = key.field.metadata["kind"]
    value: Any
    if text.lstrip().startswith("[") and kind.name.startswith("list"):
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise EditError(f"{key.dotted}: not a TOML array: {text!r}") from None
    else:
        value = kind.from_text(text)
    if value is None:
        raise EditError(f"{key.dotted}: to leave it unset, use offload config unset")
    try:
        kind.parse(value, base)
    except ValueError as exc:
        raise EditError(f"{key.dotted}: {exc}") from None
    return list(value) if isinstance(value, tuple) else value


def set_value(path: Path, key: KeyPath, text: str) -> Settings | None:
    """Set ``key`` to ``text`` in the file at ``path``.

    Returns the settings the file now gives, or None when problems it already
    had elsewhere keep it from loading.
    """
    target = _real(path)
    value = read_value(key, text, target.parent)
    doc = _parse(target)
    table = _table_for(doc, key, create=False)
    uncommented = None
    if table is not None and key.name not in table:
        uncommented = _uncomment_in_place(doc, key, value)
    if uncommented is not None:
        return _replace(target, uncommented, path)
    table = _table_for(doc, key, create=True)
    table[key.name] = value
    return _replace(target, tomlkit.dumps(doc), path)


def _uncomment_in_place(doc: tomlkit.TOMLDocument, key: KeyPath, value: Any) -> str | None:
    """The file with ``key``'s commented ``# name = ...`` line, in its own table, set.

    A file from ``offload config init`` or ``settings --example`` shows every
    setting so, under its help; the value goes there rather than at the table's
    end. None when there is no such line, or the result would not read back.
    """
    lines = tomlkit.dumps(doc).splitlines(keepends=True)
    header = None if key.site is None else f"[sites.{key.site}]"
    inside = header is None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            if inside and header is None:
                break
            inside = stripped == header
            continue
        if inside and re.fullmatch(rf"#\s*{re.escape(key.name)}\s*=.*", stripped):
            lines[i] = f"{key.name} = {toml_literal(value)}\n"
            text = "".join(lines)
            try:
                table = _table_for(tomlkit.parse(text), key, create=False)
            except tomlkit.exceptions.ParseError:
                return None
            return text if table is not None and table.get(key.name) == value else None
    return None


def unset_value(path: Path, key: KeyPath) -> bool:
    """Remove ``key`` from the file at ``path``; False when the file did not set it."""
    target = _real(path)
    doc = _parse(target)
    table = _table_for(doc, key, create=False)
    if table is None or key.name not in table:
        return False
    del table[key.name]
    _replace(target, tomlkit.dumps(doc), path)
    return True


def _real(path: Path) -> Path:
    """The file behind a symlink: a rename must replace the file, not the link."""
    return Path(os.path.realpath(path))


def _parse(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        problem = "config file not found (offload config init writes one)"
    except IsADirectoryError:
        problem = "is a folder, not a config file"
    except OSError as exc:
        problem = f"cannot read the config file: {exc.strerror or type(exc).__name__}"
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (bad byte at offset {exc.start})"
    except tomlkit.exceptions.ParseError as exc:
        problem = f"invalid TOML: {exc}"
    raise ConfigError(f"{path}: {problem}")


def _table_for(doc: tomlkit.TOMLDocument, key: KeyPath, *, create: bool) -> Any:
    if key.site is None:
        return doc
    sites = doc.get("sites")
    if sites is None:
        if not create:
            return None
        sites = tomlkit.table(is_super_table=True)
        doc["sites"] = sites
    if not isinstance(sites, dict):
        raise ConfigError("sites: must be [sites.NAME] tables")
    table = sites.get(key.site)
    if table is None and create:
        table = tomlkit.table()
        sites[key.site] = table
    if table is not None and not isinstance(table, Table | dict):
        raise ConfigError(f"sites.{key.site}: must be a [sites.{key.site}] table")
    return table


def _replace(target: Path, text: str, shown_as: Path) -> Settings | None:
    """Validate ``text`` as the new file, then put it in place of ``target`` atomically.

    Only problems the change brings refuse it: a file already wrong elsewhere
    can still be mended one key at a time.
    """
    before = _problems(target, target)
    mode = stat.S_IMODE(target.stat().st_mode)
    temp = _write_temp(target, text, mode)
    try:
        after = _problems(temp, target)
        new = [p for p in after if p not in before]
        if new:
            raise ConfigError([p.replace(str(target), str(shown_as)) for p in new])
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return None if after else load_settings(target, {})


def _problems(path: Path, named: Path) -> list[str]:
    try:
        load_settings(path, {})
    except ConfigError as exc:
        return [p.replace(str(path), str(named)) for p in exc.problems]
    return []


def _write_temp(target: Path, text: str, mode: int) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_new(path: Path, text: str, *, force: bool) -> None:
    """Write a new config file (mode 0600), validated first; an existing one needs ``force``."""
    target = _real(path) if path.is_symlink() else Path(os.path.abspath(path))
    if target.exists() and not force:
        raise EditError(f"{path} exists")
    if not target.parent.is_dir():
        raise EditError(f"{target.parent}: no such folder")
    temp = _write_temp(target, text, NEW_FILE_MODE)
    try:
        problems = _problems(temp, target)
        if problems:
            raise ConfigError([p.replace(str(target), str(path)) for p in problems])
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# -- init ----------------------------------------------------------------------------

_SETTING_LINE = r"^# {name} = .*$"


def fill_example(
    example: str, site: str, values: Mapping[str, Any], site_values: Mapping[str, Any]
) -> str:
    """The example config with its site renamed and the given settings uncommented.

    Each given setting replaces its own ``# name = default`` line, under its help
    comment; every other line stays a commented default that is valid once
    uncommented.
    """
    head, sep, tail = example.partition("[sites.blog]\n")
    if not sep:
        raise ConfigError("the example configuration has no [sites.blog] table to start from")
    head = head.replace("/_offload/blog/", f"/_offload/{site}/")
    for name, value in values.items():
        head = _uncomment(head, name, value)
    for name, value in site_values.items():
        tail = _uncomment(tail, name, value)
    return f"{head}[sites.{site}]\n{tail}"


def _uncomment(text: str, name: str, value: Any) -> str:
    line = f"{name} = {toml_literal(value)}"
    new, count = re.subn(
        _SETTING_LINE.format(name=re.escape(name)), lambda _: line, text, count=1, flags=re.M
    )
    return new if count else text.rstrip("\n") + f"\n\n{line}\n"


def toml_literal(value: Any) -> str:
    """A value as TOML spells it (a secret in full: this is the file that holds it)."""
    if isinstance(value, Secret):
        value = value.reveal()
    elif isinstance(value, Path):
        value = str(value)
    elif isinstance(value, tuple):
        value = list(value)
    return str(tomlkit.item(value).as_string())


def extra_site_table(name: str, values: Mapping[str, Any]) -> str:
    """A further ``[sites.NAME]`` table holding only the given settings."""
    lines = [f"[sites.{name}]", *(f"{k} = {toml_literal(v)}" for k, v in values.items())]
    return "\n" + "\n".join(lines) + "\n"


def changed_settings(obj: Any, base: Path) -> dict[str, Any]:
    """The declared settings of ``obj`` whose value is not their default (read from ``base``)."""
    changed = {}
    for f in declared_fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.metadata["kind"].parse(f.default, base)
            if value == default:
                continue
        changed[f.name] = value
    return changed
