"""Prints one docker-compose.yml service as JSON ({"command": [...], "environment": {...}}), with
`${VAR:-default}` resolved to its default and `$$` to `$`, as `docker compose up` does without a
.env file. Used by tests/it/deploy.rs to run the same command line outside Docker."""
import json
import re
import sys

from ruamel.yaml import YAML

path, service = sys.argv[1], sys.argv[2]
with open(path) as f:
    spec = YAML(typ="safe").load(f)["services"][service]


def resolve(value):
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(value))
    if re.search(r"\$\{?\w", value.replace("$$", "")):
        sys.exit(f"unresolved variable in {value!r}")
    return value.replace("$$", "$")


env = spec.get("environment", {})
if isinstance(env, list):
    env = dict(item.split("=", 1) for item in env)
print(json.dumps({
    "command": [resolve(c) for c in spec.get("command", [])],
    "environment": {k: resolve(v) for k, v in env.items()},
}))
