"""The messages the charm can show, read from its source: every `ops.<Kind>Status(...)` the charm builds
and every `event.fail(...)` of its action, as templates whose fixed text comes from the code.

A message is followed through what builds it: f-strings, module constants, local variables assigned
once, the charm's methods and the functions of the src/ modules it imports, and of the modules of their
package those import (their `return` values), and
`shorten(...)`. What cannot be followed (a value known only at run time) is a wildcard.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
CHARM = SRC / "charm.py"
STATUS_CLASSES = {"ActiveStatus", "BlockedStatus", "WaitingStatus", "MaintenanceStatus"}
WILDCARD = None  # a part of a template known only at run time
PASS_THROUGH = {"shorten"}  # functions whose result is their first argument, maybe cut short

Template = tuple  # of str (fixed text) and WILDCARD


@dataclass(frozen=True)
class Message:
    kind: str  # "status" or "action failure"
    template: Template
    line: int
    source: str = "src/charm.py"  # the file of `line`

    @property
    def fixed_text(self) -> str:
        return "".join(part for part in self.template if part is not WILDCARD)

    def readable(self) -> str:
        return "".join("<…>" if part is WILDCARD else part for part in self.template)

    def pattern(self) -> re.Pattern:
        """Matches the message written in one Markdown code span, with anything for each wildcard."""
        return re.compile("".join(r"[^`\n]+?" if part is WILDCARD else re.escape(part) for part in self.template))


class _Code:
    """The charm's module and the src/ modules it imports from."""

    def __init__(self) -> None:
        charm = _parse(CHARM)
        modules = [charm]
        for node in charm.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                package = SRC.joinpath(*node.module.split("."))
                candidates = [package.with_suffix(".py"), *(package / f"{alias.name}.py" for alias in node.names)]
                imported = [_parse(path) for path in candidates if path.exists()]
                modules += imported + [module for parent in imported for module in _siblings(parent, package)]
        self.charm = charm
        self.functions: dict[str, ast.FunctionDef] = {}
        self.constants: dict[str, str] = {}
        for module in modules:
            for node in module.body:
                if isinstance(node, ast.FunctionDef):
                    self.functions[node.name] = node
                elif isinstance(node, ast.ClassDef) and module is charm:
                    for member in node.body:
                        if isinstance(member, ast.FunctionDef):
                            self.functions[member.name] = member
                elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                            self.constants[target.id] = node.value.value

    def templates(self, node: ast.expr, function: ast.FunctionDef, seen: frozenset = frozenset()) -> list[Template]:
        """Every template `node` can evaluate to in `function` (None values give none)."""
        if isinstance(node, ast.Constant):
            return [] if node.value is None else [(str(node.value),)]
        if isinstance(node, ast.JoinedStr):
            choices = [self._formatted(value, function, seen) for value in node.values]
            return [tuple(itertools.chain.from_iterable(parts)) for parts in itertools.product(*choices)]
        if isinstance(node, ast.IfExp):
            return self.templates(node.body, function, seen) + self.templates(node.orelse, function, seen)
        if isinstance(node, ast.Name):
            return self._name(node.id, function, seen)
        if isinstance(node, ast.Call):
            return self._call(node, None, function, seen)
        return [(WILDCARD,)]

    def _formatted(self, value: ast.expr, function: ast.FunctionDef, seen: frozenset) -> list[Template]:
        if isinstance(value, ast.FormattedValue):
            return self.templates(value.value, function, seen) or [(WILDCARD,)]
        return self.templates(value, function, seen)

    def _name(self, name: str, function: ast.FunctionDef, seen: frozenset) -> list[Template]:
        assignments = []
        for node in ast.walk(function):
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                return [(WILDCARD,)]  # built up step by step
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        assignments.append((node.value, None))
                    elif isinstance(target, ast.Tuple):
                        for index, element in enumerate(target.elts):
                            if isinstance(element, ast.Name) and element.id == name:
                                assignments.append((node.value, index))
        if len(assignments) == 1:
            value, index = assignments[0]
            if index is None:
                return self.templates(value, function, seen)
            if isinstance(value, ast.Call):
                return self._call(value, index, function, seen)
        if not assignments and name in self.constants:
            return [(self.constants[name],)]
        return [(WILDCARD,)]

    def _call(self, call: ast.Call, element: int | None, function: ast.FunctionDef, seen: frozenset) -> list[Template]:
        """What a call returns: the returns of a known function (the `element`-th of a returned tuple)."""
        func = call.func
        name = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            name = func.attr  # a method of the charm, or a function of a module it reads
        if name in PASS_THROUGH and call.args and element is None:
            return self.templates(call.args[0], function, seen)
        callee = self.functions.get(name or "")
        if callee is None or name in seen:
            return [(WILDCARD,)]
        results = []
        for node in ast.walk(callee):
            if isinstance(node, ast.Return) and node.value is not None:
                value = node.value
                if element is not None:
                    if not isinstance(value, ast.Tuple):
                        results.append((WILDCARD,))
                        continue
                    value = value.elts[element]
                results += self.templates(value, callee, seen | {name})
        return results


def _siblings(module: ast.Module, package: Path) -> list[ast.Module]:
    """The modules of the same package that `module` imports (`from . import name`)."""
    names = [
        alias.name
        for node in module.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module
        for alias in node.names
    ]
    return [_parse(package / f"{name}.py") for name in names if (package / f"{name}.py").exists()]


def _parse(path: Path) -> ast.Module:
    """The module, each function marked with the file it is in."""
    module = ast.parse(path.read_text())
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef):
            node.source = path.relative_to(SRC.parent).as_posix()  # type: ignore[attr-defined]
    return module


def _merged(template: Template) -> Template:
    """Adjacent fixed parts joined, adjacent wildcards made one."""
    parts: list = []
    for part in template:
        if part is WILDCARD and parts and parts[-1] is WILDCARD:
            continue
        if part is not WILDCARD and parts and parts[-1] is not WILDCARD:
            parts[-1] += part
            continue
        parts.append(part)
    return tuple(parts)


def charm_messages() -> list[Message]:
    """Every status message and action failure message src/charm.py can produce, as templates."""
    code = _Code()
    messages: dict[tuple, Message] = {}
    for function in code.functions.values():
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            if node.func.attr in STATUS_CLASSES:
                kind = "status"
            elif node.func.attr == "fail" and isinstance(node.func.value, ast.Name) and node.func.value.id == "event":
                kind = "action failure"
            else:
                continue
            for template in code.templates(node.args[0], function):
                template = _merged(template)
                messages.setdefault((kind, template), Message(kind, template, node.lineno, function.source))
    return sorted(
        messages.values(), key=lambda message: (message.kind, message.source, message.line, message.readable())
    )
