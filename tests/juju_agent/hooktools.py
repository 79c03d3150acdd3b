#!/usr/bin/python3
"""Juju's hook tools, as a charm calls them, for driving a packed charm outside Juju.

Installed as one symlink per tool name (`is-leader`, `relation-get`, …) in a directory put first on
the hook's PATH. The model (config, relations, leadership, statuses, action params and results) lives
in the JSON file named by $JUJU_AGENT_MODEL; every call is appended to $JUJU_AGENT_CALLS as a JSON line
{tool, args, stdin, hook}. Besides Juju's tools, the machine commands a test must not let run for real
are recorded too: apt-get (and what charmlibs.apt asks of dpkg and apt-cache) and systemctl. Only the
standard library: it runs on the machine's python3, like the charm's own dispatch. Formats follow ops'
hook command wrappers (ops/hookcmds).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

# What apt-cache answers for a package the harness pretends the archive has.
APT_CACHE_STANZA = "Package: {name}\nArchitecture: all\nVersion: 1.0-0ubuntu1\n"


class ToolError(Exception):
    """Exit 1 with this message, as a hook tool does for a bad call."""


def option(args: list[str], name: str) -> str | None:
    """Remove `name VALUE` (or `name=VALUE`) from args and return VALUE."""
    for index, arg in enumerate(args):
        if arg == name:
            value = args[index + 1]
            del args[index : index + 2]
            return value
        if arg.startswith(name + "="):
            del args[index]
            return arg.split("=", 1)[1]
    return None


def flag(args: list[str], name: str) -> bool:
    if name in args:
        args.remove(name)
        return True
    return False


def after_double_dash(args: list[str]) -> list[str]:
    return args[args.index("--") + 1 :] if "--" in args else args


def relation_id(model: dict, args: list[str]) -> str:
    ref = option(args, "-r") or os.environ.get("JUJU_RELATION_ID", "")
    rid = ref.rsplit(":", 1)[-1]
    if rid not in model["relations"]:
        raise ToolError(f"invalid value {ref!r} for option -r: relation not found")
    return rid


def unit_app(name: str) -> str:
    return name.split("/")[0]


def is_leader(model, args, stdin):
    return model["leader"]


def juju_exec(model, args, stdin):
    """`juju-exec UNIT is-leader` (what the charm's cron lines ask, outside any hook): the model's answer."""
    if args[1:] != ["is-leader"]:
        raise ToolError(f"only `juju-exec UNIT is-leader` is simulated, not {args}")
    return model["leader"]


def config_get(model, args, stdin):
    option(args, "--format")
    keys = [arg for arg in args if not arg.startswith("-")]
    return model["config"].get(keys[0]) if keys else model["config"]


def relation_ids(model, args, stdin):
    option(args, "--format")
    (endpoint,) = args
    return [f"{endpoint}:{rid}" for rid, relation in model["relations"].items() if relation["endpoint"] == endpoint]


def relation_list(model, args, stdin):
    option(args, "--format")
    relation = model["relations"][relation_id(model, args)]
    if flag(args, "--app"):
        return relation["app"]
    return sorted(relation["units"])


def relation_get(model, args, stdin):
    option(args, "--format")
    relation = model["relations"][relation_id(model, args)]
    app = flag(args, "--app")
    key, target = ([*args, "-", os.environ.get("JUJU_REMOTE_UNIT", "")])[:2]
    me = os.environ["JUJU_UNIT_NAME"]
    if app:
        data = relation["local_app"] if target == unit_app(me) else relation["app_data"]
    else:
        data = relation["local_unit"] if target == me else relation["units"].get(target)
    if data is None:
        raise ToolError(f"cannot read settings for unit {target!r} in relation {relation['endpoint']}")
    return data if key == "-" else data.get(key, "")


def relation_set(model, args, stdin):
    relation = model["relations"][relation_id(model, args)]
    app = flag(args, "--app")
    if option(args, "--file") != "-":
        raise ToolError("the harness takes relation settings only as --file -")
    if app and not model["leader"]:
        raise ToolError("cannot write relation settings: this unit is not the leader")
    data = relation["local_app" if app else "local_unit"]
    for key, value in json.loads(stdin).items():
        if value == "":
            data.pop(key, None)
        else:
            data[key] = value


def relation_model_get(model, args, stdin):
    return {"uuid": os.environ["JUJU_MODEL_UUID"]}


def status_set(model, args, stdin):
    app = option(args, "--application") in ("True", "true")
    words = after_double_dash(args) if "--" in args else args[1:]
    status = args[0]
    model["status"]["app" if app else "unit"] = {"status": status, "message": " ".join(words)}


def status_get(model, args, stdin):
    app = option(args, "--application") == "true"
    current = {**model["status"]["app" if app else "unit"], "status-data": {}}
    return {"application-status": {**current, "units": {}}} if app else current


def juju_log(model, args, stdin):
    return None


def action_get(model, args, stdin):
    option(args, "--format")
    params = model["action"]["params"]
    return params.get(args[0]) if args else params


def action_set(model, args, stdin):
    for arg in args:
        key, value = arg.split("=", 1)
        model["action"]["results"][key] = value


def action_log(model, args, stdin):
    model["action"]["log"].append(" ".join(after_double_dash(args)))


def action_fail(model, args, stdin):
    model["action"]["failed"] = " ".join(after_double_dash(args))


def state_get(model, args, stdin):
    option(args, "--format")
    return model["state"].get(args[0]) if args else model["state"]


def state_set(model, args, stdin):
    if option(args, "--file") == "-":
        model["state"].update(json.loads(stdin))
    for arg in args:
        key, value = arg.split("=", 1)
        model["state"][key] = value


def state_delete(model, args, stdin):
    model["state"].pop(args[0], None)


def network_get(model, args, stdin):
    address = model["address"]
    return {
        "bind-addresses": [
            {
                "mac-address": "",
                "interface-name": "lo",
                "addresses": [{"hostname": "", "value": address, "cidr": f"{address}/32"}],
            }
        ],
        "egress-subnets": [f"{address}/32"],
        "ingress-addresses": [address],
    }


def application_version_set(model, args, stdin):
    model["version"] = " ".join(after_double_dash(args))


def goal_state(model, args, stdin):
    return {"units": {os.environ["JUJU_UNIT_NAME"]: {"status": "active"}}, "relations": {}}


def opened_ports(model, args, stdin):
    return []


def dpkg(model, args, stdin):
    """Only what charmlibs.apt asks: the architecture, and `-l` (nothing is installed)."""
    if args == ["--print-architecture"]:
        return "amd64"
    raise ToolError(f"dpkg-query: no packages found matching {args[-1]}")


def apt_cache(model, args, stdin):
    if args[:1] != ["show"]:
        raise ToolError(f"apt-cache {' '.join(args)}: not simulated")
    return "\n".join(APT_CACHE_STANZA.format(name=name) for name in args[1:])


def apt_get(model, args, stdin):
    model["packages"].append(args)


def systemctl(model, args, stdin):
    """What the charm asks of systemd is recorded, not done: a test starts the service itself."""
    model.setdefault("systemctl", []).append(args)


TOOLS = {
    "is-leader": is_leader,
    "juju-exec": juju_exec,
    "config-get": config_get,
    "relation-ids": relation_ids,
    "relation-list": relation_list,
    "relation-get": relation_get,
    "relation-set": relation_set,
    "relation-model-get": relation_model_get,
    "status-set": status_set,
    "status-get": status_get,
    "juju-log": juju_log,
    "action-get": action_get,
    "action-set": action_set,
    "action-log": action_log,
    "action-fail": action_fail,
    "state-get": state_get,
    "state-set": state_set,
    "state-delete": state_delete,
    "network-get": network_get,
    "application-version-set": application_version_set,
    "goal-state": goal_state,
    "opened-ports": opened_ports,
    "dpkg": dpkg,
    "apt-cache": apt_cache,
    "apt-get": apt_get,
    "systemctl": systemctl,
}


def print_answer(answer) -> None:
    if answer is None:
        return
    print(json.dumps(answer) if "--format=json" in sys.argv else answer)


def main() -> int:
    tool, args = Path(sys.argv[0]).name, sys.argv[1:]
    stdin = sys.stdin.read() if "-" in args and "--file" in args else None
    model_path = Path(os.environ["JUJU_AGENT_MODEL"])
    with open(model_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(os.environ["JUJU_AGENT_CALLS"], "a") as calls:
            calls.write(
                json.dumps({"tool": tool, "args": args, "stdin": stdin, "hook": os.environ.get("JUJU_DISPATCH_PATH")})
                + "\n"
            )
        model = json.loads(model_path.read_text())
        try:
            answer = TOOLS[tool](model, list(args), stdin)
        except ToolError as error:
            print(f"ERROR {error}", file=sys.stderr)
            return 1
        model_path.write_text(json.dumps(model, indent=1))
    print_answer(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
