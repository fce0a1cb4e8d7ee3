"""Loading settings: one TOML file plus ``OFFLOAD_*`` variables, validated up front.

Every problem is collected and reported at once, one line each, naming the file
and setting (or the variable) and what is wrong. Relative paths in the file
resolve against the file's folder; relative paths in the environment resolve
against the current folder, where the variable was set.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from offload.config.settings import (
    REQUIRED,
    RESERVED_ENV,
    SITE_NAME,
    Settings,
    Site,
    asset_server_problems,
    declared_fields,
    purge_problems,
)
from offload.errors import ConfigError
from offload.storage.bucketname import profile_for, validate

#: A value waiting to be parsed: (TOML or env reading, where to blame, base folder).
_Raw = tuple[Any, str, Path]


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _unknown(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        problem = "config file not found"
    except IsADirectoryError:
        problem = "is a folder, not a config file"
    except OSError as e:
        problem = f"cannot read the config file: {e.strerror or type(e).__name__}"
    except UnicodeDecodeError as e:
        problem = f"is not UTF-8 text (bad byte at offset {e.start})"
    except tomllib.TOMLDecodeError as e:
        problem = "invalid TOML: " + " ".join(str(e).split()).replace("(at line", "(line")
    raise ConfigError(f"{path}: {problem}")


def _read_file(
    doc: dict[str, Any], file: str, base: Path, problems: list[str]
) -> tuple[dict[str, _Raw], dict[str, dict[str, _Raw]]]:
    global_names = [f.name for f in declared_fields(Settings)]
    site_names = [f.name for f in declared_fields(Site)]
    raw: dict[str, _Raw] = {}
    sites: dict[str, dict[str, _Raw]] = {}
    for key, value in doc.items():
        if key in global_names:
            raw[key] = (value, f"{file}: {key}", base)
        elif key != "sites":
            problem = _unknown(key, [*global_names, "sites"])
            if key in site_names:
                problem = "is a site setting: it belongs in a [sites.NAME] table"
            problems.append(f"{file}: {_key(key)}: {problem}")
    tables = doc.get("sites", {})
    if not isinstance(tables, dict):
        problems.append(f"{file}: sites: must be [sites.NAME] tables")
        tables = {}
    for site, table in tables.items():
        where = f"{file}: sites.{_key(site)}"
        if not SITE_NAME.fullmatch(site):
            problems.append(f"{where}: a site name is 1-63 of a-z 0-9 - _, starting a-z or 0-9")
        elif not isinstance(table, dict):
            problems.append(f"{where}: must be a [sites.{site}] table")
        else:
            sites[site] = {}
            for key, value in table.items():
                if key in site_names:
                    sites[site][key] = (value, f"{where}.{key}", base)
                else:
                    problem = _unknown(key, site_names)
                    if key in global_names:
                        problem = "is a global setting: it belongs above the first [sites.*] table"
                    problems.append(f"{where}.{_key(key)}: {problem}")
    return raw, sites


_ENV_FORM = "OFFLOAD_SITES__<SITE>__<NAME>"


def _env_site(name: str) -> str:
    return name.upper().replace("-", "_")


def _read_env(
    environ: Mapping[str, str],
    cwd: Path,
    raw: dict[str, _Raw],
    sites: dict[str, dict[str, _Raw]],
    problems: list[str],
) -> bool:
    by_var = {f"OFFLOAD_{f.name.upper()}": f for f in declared_fields(Settings)}
    site_fields = {f.name.upper(): f for f in declared_fields(Site)}
    by_env_site: dict[str, list[str]] = {}
    for site in sites:
        by_env_site.setdefault(_env_site(site), []).append(site)
    used = False
    for var in sorted(v for v in environ if v.startswith("OFFLOAD_") and v not in RESERVED_ENV):
        where, parts = f"environment: {var}", var.split("__")
        env_site, name = (_env_site(parts[1]), parts[2]) if len(parts) == 3 else ("", "")
        matches = by_env_site.get(env_site, [])
        if var in by_var:
            f, into = by_var[var], raw
        elif var.startswith("OFFLOAD_SITE") and not (parts[0] == "OFFLOAD_SITES" and env_site):
            problems.append(f"{where}: unknown setting (site settings are {_ENV_FORM})")
            continue
        elif not var.startswith("OFFLOAD_SITES__"):
            problem = _unknown(var, list(by_var))
            if var[8:] in site_fields:
                problem = f"is a site setting: use OFFLOAD_SITES__<SITE>__{var[8:]}"
            problems.append(f"{where}: {problem}")
            continue
        elif name not in site_fields:
            problem = _unknown(var, [f"OFFLOAD_SITES__{env_site}__{n}" for n in site_fields])
            if f"OFFLOAD_{name}" in by_var:
                problem = f"is a global setting: use OFFLOAD_{name}"
            problems.append(f"{where}: {problem}")
            continue
        elif len(matches) > 1:
            problems.append(f"{where}: matches sites {' and '.join(map(repr, matches))}")
            continue
        elif not matches and not SITE_NAME.fullmatch(env_site.lower()):
            problems.append(f"{where}: {env_site.lower()!r} is not a valid site name")
            continue
        else:
            site = matches[0] if matches else env_site.lower()
            by_env_site[env_site] = [site]
            f, into = site_fields[name], sites.setdefault(site, {})
        into[f.name] = (f.metadata["kind"].from_text(environ[var]), where, cwd)
        used = True
    return used


def _parse(
    cls: type,
    raw: dict[str, _Raw],
    blame: Callable[[str], str],
    base: Path,
    problems: list[str],
    note: str = "",
) -> dict[str, Any]:
    values = {}
    for f in declared_fields(cls):
        if f.name in raw:
            value, where, folder = raw[f.name]
        elif f.default is REQUIRED:
            problems.append(f"{blame(f.name)}: required setting is missing{note}")
            continue
        else:
            value, where, folder = f.default, blame(f.name), base
        try:
            values[f.name] = f.metadata["kind"].parse(value, folder)
        except ValueError as e:
            problems.append(f"{where}: {e}")
    return values


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read ``path`` (None: no file), apply ``OFFLOAD_*`` overrides, validate it all.

    Raises ConfigError listing every problem, one line each (a file that cannot be
    read or parsed is the only problem reported). With no sites the result has
    none: the caller decides on the embedded default.
    """
    file = str(path) if path is not None else "environment"
    base = Path(path).absolute().parent if path is not None else Path.cwd()
    problems: list[str] = []
    warnings: list[str] = []
    raw, raw_sites = _read_file(_read_toml(path) if path is not None else {}, file, base, problems)
    in_file = set(raw_sites)
    env_used = _read_env(environ, Path.cwd(), raw, raw_sites, problems)
    values = _parse(Settings, raw, lambda key: f"{file}: {key}", base, problems)
    sites: dict[str, Site] = {}
    claimed: dict[str, str] = {}
    for name, site_raw in raw_sites.items():

        def blame(key: str, name: str = name) -> str:
            if name in in_file:
                return f"{file}: sites.{name}.{key}"
            return f"environment: OFFLOAD_SITES__{_env_site(name)}__{key.upper()}"

        note = "" if name in in_file else f" (site {name!r} comes only from the environment)"
        site_values = _parse(Site, site_raw, blame, base, problems, note)
        for host in site_values.get("hostnames", ()):
            if host in claimed:
                where = site_raw["hostnames"][1]
                problems.append(
                    f"{where}: {host!r} is claimed by sites {claimed[host]!r} and {name!r}"
                )
            claimed.setdefault(host, name)
        if site_values.get("signed_prefixes") and not site_values.get("signing_secret"):
            problems.append(f"{blame('signing_secret')}: required when signed_prefixes is set")
        for setting_name, problem in purge_problems(site_values) + asset_server_problems(
            site_values
        ):
            problems.append(f"{blame(setting_name)}: {problem}")
        if "storage" in site_values:
            sites[name] = site = Site(name=name, **site_values)
            for setting_name in ("storage", "backup"):
                where = site_raw[setting_name][1] if setting_name in site_raw else ""
                _check_bucket(site, setting_name, where, problems, warnings)
    if problems:
        raise ConfigError(problems)
    source = [str(path)] if path is not None else []
    return Settings(
        **values,
        sites=sites,
        source=" + ".join(source + ["environment"] * env_used) or "defaults",
        warnings=tuple(warnings),
    )


def _check_bucket(
    site: Site, setting_name: str, where: str, problems: list[str], warnings: list[str]
) -> None:
    """Refuse a bucket its provider would refuse; warn of a dotted one used path-style.

    A dotted name breaks virtual-hosted HTTPS (the wildcard certificate covers
    one label), so it passes only with ``addressing_style = "path"``.
    """
    url = getattr(site, setting_name)
    if not url.startswith("s3://"):
        return
    bucket = url[len("s3://") :].split("/", 1)[0]
    profile = site.bucket_profile
    if profile == "auto":
        profile = profile_for(site.endpoint_url, bucket)
    path_style = site.addressing_style == "path"
    for violation in validate(bucket, profile, allow_dots=path_style):
        if violation.severity == "error":
            problems.append(
                f"{where}: bucket {bucket!r} breaks the {profile} rule {violation.rule}: "
                f"{violation.message}"
            )
        elif violation.rule == "dot_breaks_wildcard_tls":
            warnings.append(
                f"{where}: bucket {bucket!r} has dots; it works only path-style, as set "
                "(virtual-hosted HTTPS would fail the wildcard certificate)"
            )
        else:
            warnings.append(f"{where}: bucket {bucket!r}: {violation.message}")
