"""Grafana's provisioning files as Grafana reads them: YAML parsed, then every string value expanded.

Reproduces grafana/grafana pkg/services/provisioning/values (interpolateValue) and pkg/setting
(ExpandVar), in this order, on each string value after YAML parsing (numbers and booleans untouched):

1. split on `$$` (each `$$` becomes a literal `$` at the end);
2. in each part, `${VAR}` and `$__env{VAR}` -> the environment (unset -> empty string, silently);
   `$__file{path}` -> the file's content, whitespace-trimmed (a missing file is an error);
3. then Go's os.ExpandEnv: `$VAR` and `${VAR}` (a `$` followed by no name stays).

`datasource_login(...)` turns the provisioned Postgres data source into the host, port, database,
sslmode, user and password Grafana would connect with, so a test can connect with exactly those.
Grafana's Postgres data source accepts only these sslmodes (lib/pq): GRAFANA_SSLMODES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

GRAFANA_SSLMODES = ("disable", "require", "verify-ca", "verify-full")

_EXPANDER = re.compile(r"\$(|__\w+)\{([^}]+)\}")


class ProvisioningError(ValueError):
    pass


def _apply_expander(text: str, expander: str, env: Mapping[str, str]) -> str:
    for match in _EXPANDER.finditer(text):  # matches found once, then replaced one by one (as Go does)
        kind, arg = match.group(1), match.group(2)
        if expander == "env" and kind in ("", "__env"):
            text = text.replace(match.group(0), env.get(arg, ""), 1)
        elif expander == "file" and kind == "__file":
            try:
                content = Path(arg).read_text()
            except OSError as exc:
                raise ProvisioningError(f"got error while expanding expander file: {exc}") from None
            text = text.replace(match.group(0), content.strip(), 1)
    return text


_SPECIAL = set("*#$@!?-0123456789")


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isascii() and c.isalnum()


def _shell_name(s: str) -> tuple[str, int]:
    """Go's os.getShellName."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                return ("", 2) if i == 1 else (s[1:i], i + 1)
        return "", 1
    if s[0] in _SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and _is_alnum(s[i]):
        i += 1
    return s[:i], i


def go_expand_env(s: str, env: Mapping[str, str]) -> str:
    """Go's os.ExpandEnv."""
    out: list[str] = []
    i = j = 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            name, width = _shell_name(s[j + 1:])
            if name == "" and width > 0:
                pass  # bad syntax: eaten
            elif name == "":
                out.append("$")
            else:
                out.append(env.get(name, ""))
            j += width
            i = j + 1
        j += 1
    return "".join(out) + s[i:]


def interpolate_value(value: str, env: Mapping[str, str]) -> str:
    parts = value.split("$$")
    expanded = []
    for part in parts:
        part = _apply_expander(part, "env", env)
        part = _apply_expander(part, "file", env)
        expanded.append(go_expand_env(part, env))
    return "$".join(expanded)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_value(node, env)
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    return node


def load_provisioning(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    import yaml

    return interpolate(yaml.safe_load(path.read_text()), env)


@dataclass(frozen=True)
class DatasourceLogin:
    uid: str
    type: str
    host: str
    port: int
    database: str
    sslmode: str
    user: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return (f"DatasourceLogin(uid={self.uid!r}, host={self.host!r}, port={self.port}, "
                f"database={self.database!r}, sslmode={self.sslmode!r}, user={self.user!r}, password='***')")


def datasource_login(provisioning: dict[str, Any], uid: str) -> DatasourceLogin:
    """The connection a provisioned Postgres data source yields (url is `host:port`, no scheme)."""
    matches = [d for d in provisioning.get("datasources", []) if d.get("uid") == uid]
    if len(matches) != 1:
        raise ProvisioningError(f"expected one data source with uid {uid!r}, found {len(matches)}")
    ds = matches[0]
    host, sep, port = str(ds.get("url", "")).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ProvisioningError(f"data source url {ds.get('url')!r} is not host:port")
    json_data, secure = ds.get("jsonData") or {}, ds.get("secureJsonData") or {}
    return DatasourceLogin(uid=uid, type=ds.get("type", ""), host=host, port=int(port),
                           database=str(json_data.get("database", "")), sslmode=str(json_data.get("sslmode", "")),
                           user=str(ds.get("user", "")), password=str(secure.get("password", "")))
