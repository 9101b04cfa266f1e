"""Import audit: every third-party module that the package, the kernels, the launch scripts, the
benchmarks or the tests import is declared in pyproject.toml (core dependencies or an extra), so a
fresh virtual environment built from the README's commands has it. A package installed by hand on
a build machine once hid a missing one (matplotlib) from CI."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
AUDITED = ("nayer_scale", "kernels", "launch", "benchmarks", "tests", "scripts")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """Every distribution named by the core dependencies or an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_normalise(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in reqs}


def _imports() -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for folder in AUDITED:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _own_modules() -> set[str]:
    own = {"nayer_scale", "nayer_kernels", "conftest", "benchmarks"}
    for folder in AUDITED:  # sibling-module imports inside launch/, benchmarks/, tests/
        own |= {p.stem for p in (ROOT / folder).glob("*.py")}
        own |= {p.parent.name for p in (ROOT / folder).glob("*/__init__.py")}  # local packages: tests/helpers
    return own


def _outside_dev() -> set[str]:
    """Optional imports (``nayer_scale.extras.EXTRAS``) whose extra is not part of dev: installed in an
    environment of its own (the vision extra: torchvision needs another torch build, see .ci/run), so
    the test command's environment does not have them."""
    from nayer_scale.extras import EXTRAS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    in_dev = set(re.findall(r"nayer-scale\[([^\]]*)\]", " ".join(extras["dev"]))[0].split(","))
    return {module for module, extra in EXTRAS.items() if extra in extras and extra not in in_dev}


def test_every_third_party_import_is_declared():
    declared = _declared()
    outside_dev = _outside_dev()
    distributions = metadata.packages_distributions()
    own, stdlib = _own_modules(), set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for module, files in sorted(_imports().items()):
        if module in stdlib or module in own:
            continue
        dists = {_normalise(d) for d in distributions.get(module, [])}
        where = ", ".join(sorted(files)[:3])
        if not dists and module in outside_dev and _normalise(module) in declared:
            continue  # declared in an extra tested in its own environment
        if not dists:
            # the test command installs .[dev]: whatever the code imports must come with it
            problems.append(f"{module} (imported in {where}) is not installed: declare it and add it to the dev extra")
        elif not dists & declared:
            problems.append(
                f"{module} (distribution {', '.join(sorted(dists))}, imported in {where}) "
                "is not declared in pyproject.toml"
            )
    assert not problems, "\n".join(problems)
