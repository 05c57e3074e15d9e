"""The layers go one way (README Layout): each package imports only from the layers below it.

    schemas                      the contract (commands, events)
    parley (core)                settings, keys, records, events, outcomes, state cache, logs, metrics...
    genesys                      the Genesys Cloud client
    guest                        the two guest protocols, sans-I/O
    tasks, workers, emulator     the Celery tasks, the long-lived workers, the Genesys emulator (which reads
                                 the guest websocket frames with guest's models)
    parley.app                   what a user runs: the `parley` command, `parley run`, status, health, demo
    harness                      the real processes on loopback, for tests, benchmarks and chaos
    bench, chaos                 measurements and the chaos suite, on top of everything (never tests/)

Imports inside functions count too. The one exception: the core's settings validate Genesys region
names with ``genesys.regions``, a leaf that imports nothing of ours at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("schemas", "parley", "genesys", "guest", "tasks", "workers", "emulator", "harness", "bench", "chaos", "tests")

ALLOWED: dict[str, set[str]] = {
    "schemas": {"schemas"},
    "parley": {"schemas", "parley", "genesys.regions"},
    "genesys": {"schemas", "parley", "genesys"},
    "guest": {"schemas", "parley", "genesys", "guest"},
    "tasks": {"schemas", "parley", "genesys", "tasks"},
    "workers": {"schemas", "parley", "genesys", "guest", "tasks", "workers"},
    "emulator": {"schemas", "parley", "genesys", "guest", "emulator"},
    "parley.app": {"schemas", "parley", "genesys", "guest", "tasks", "workers", "emulator", "parley.app"},
    "harness": {"schemas", "parley", "genesys", "tasks", "emulator", "parley.app", "harness"},
    "bench": {*OURS, "parley.app"} - {"tests"},
    "chaos": {*OURS, "parley.app"} - {"tests"},
}


def layer(module: str) -> str:
    return "parley.app" if module.startswith("parley.app") else module.split(".")[0]


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in OURS]


def allowed(target: str, permitted: set[str]) -> bool:
    if target.startswith("parley.app") and "parley.app" not in permitted:
        return False
    return any(target == p or target.startswith(p + ".") for p in permitted)


@pytest.mark.parametrize("package", sorted(ALLOWED, key=len))
def test_each_layer_imports_only_from_below(package: str) -> None:
    top = ROOT / package.replace(".", "/")
    wrong = []
    for path in sorted(top.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if layer(module) != package:
            continue
        permitted = ALLOWED[package]
        for target in imports(path):
            # "from parley import keys" names the module parley.keys: judge the most precise name
            if not allowed(target, permitted) and not (target.count(".") == 0 and target in permitted):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)
