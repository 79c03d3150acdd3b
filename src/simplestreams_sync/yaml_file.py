"""Reading the sync's YAML files (mirrors.yaml, identity.yaml) the one way: the safe loader, LibYAML's
when PyYAML has it."""

from __future__ import annotations

import os

import yaml


def read_yaml(path: str | os.PathLike) -> object:
    """The document in the file; OSError when it cannot be read, yaml.YAMLError when it is no YAML."""
    with open(path) as stream:
        return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
