"""How the verification's node-side package reaches a node without SAF (saf/verify/shipping.py).

The driver program is run for real here, by an isolated Python that cannot import saf, as the
node runs it; its modules are read as Python reads them, for what a node could not satisfy.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from saf.verify import shipping
from saf.verify.fact import DRIVER_PROGRAM, MARKER
from tests.unit.bounded import bounded  # noqa: F401 - autouse: every test here is time-bounded

LINUX_MAX_ARG_STRLEN = 131072  # bytes of one argument of a command line (32 pages): `python -c` takes it whole
THIRD_PARTY = {"ray", "mlx", "numpy"}  # what a node's venv has; imported only inside the functions that use them


def isolated(program: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """``python -I -c program``: no site-packages of this project, no PYTHONPATH, run from ``cwd``."""
    return subprocess.run([sys.executable, "-I", "-c", program, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_the_driver_runs_where_saf_is_not_installed_and_prints_its_report(tmp_path):
    done = isolated(DRIVER_PROGRAM, "--address", "10.0.0.1:6380", "--expect", '{"mtu": 9000}', "--timeout", "5",
                    cwd=tmp_path)
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    report = json.loads(line[len(MARKER):])
    # this Python has no Ray: the driver got as far as importing it, and said so in its report
    assert report == {"nodes": [], "problems": ["the verification driver failed: ModuleNotFoundError: "
                                                "No module named 'ray'"]}, done.stderr


def test_every_module_is_served_under_the_shipped_name_without_ray_mlx_numpy_or_saf(tmp_path):
    names = sorted(shipping.package_sources())
    body = ("import importlib, json, sys\n"
            f"modules = [importlib.import_module(name) for name in {names!r}]\n"
            "print(json.dumps({'files': [m.__spec__.origin for m in modules], 'loaded': sorted(sys.modules)}))\n")
    done = isolated(shipping.program(body), cwd=tmp_path)
    shown = json.loads(done.stdout or "null") or {}
    assert shown, done.stderr
    assert {"saf_verify_node.driver", "saf_verify_node.ring", "saf_verify_node.scheduling"} <= set(names)
    loaded = {name.split(".")[0] for name in shown["loaded"]}
    assert not loaded & (THIRD_PARTY | {"saf"}) and "saf_verify_node" in loaded


def test_the_program_fits_one_argument_of_a_linux_command_line():
    assert len(DRIVER_PROGRAM.encode()) < LINUX_MAX_ARG_STRLEN * 0.8  # room to grow before `python -c` breaks


def test_the_launch_files_are_the_same_modules_as_the_driver_program():
    files = shipping.package_files()
    sources = shipping.package_sources()
    assert sorted(files.values()) == sorted(sources.values()) and "saf_verify_node/__init__.py" in files


def node_modules() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text()) for path in sorted(shipping.NODE_PACKAGE.glob("*.py"))}


def test_node_modules_import_each_other_relatively_at_module_level_and_nothing_of_saf():
    for name, tree in node_modules().items():
        for statement in tree.body:  # module level: the standard library, or a sibling relatively
            if isinstance(statement, ast.ImportFrom) and statement.level == 0:
                assert statement.module == "__future__" or statement.module.split(".")[0] not in THIRD_PARTY | {
                    "saf"}, f"{name}: from {statement.module} import ..."
            if isinstance(statement, ast.Import):
                assert not {alias.name.split(".")[0] for alias in statement.names} & (THIRD_PARTY | {"saf"}), name
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            # a worker unpickles a function by value with no package to import relatively from
            relative = [n for n in ast.walk(function) if isinstance(n, ast.ImportFrom) and n.level > 0]
            assert not relative, f"{name}: {function.name} imports relatively inside a function"
