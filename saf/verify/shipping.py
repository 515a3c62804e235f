"""How the node-side package (``saf/verify/node/``) reaches a node that has no SAF installed.

The verification's driver is sent inline (``python -c``, one argument, no file left behind):
:func:`program` is a small loader that holds every module's source and serves them to Python's
import system under the package name :data:`SHIPPED_PACKAGE`, followed by the code to run. The
modules stay a package of their own (imported relatively, each with its own names) rather than
being pasted into one source, so what runs on the node is what the tests import here. The driver
registers the package with Ray's cloudpickle to be pickled by value
(``register_pickle_by_value``): its actors and tasks reach Ray's workers whole, since no worker
could import it by name. ``saf launch`` ships the same files beside its own driver
(:func:`package_files`).
"""

from __future__ import annotations

from pathlib import Path

NODE_PACKAGE = Path(__file__).resolve().parent / "node"
SHIPPED_PACKAGE = "saf_verify_node"  # the package's name on a node (``saf.verify.node`` here)

_LOADER = '''import importlib.abc, importlib.util, sys
SOURCES = {sources!r}


class ShippedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports {package} and its modules from SOURCES (SAF is not installed on this node)."""

    def find_spec(self, name, path=None, target=None):
        if name in SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=name == {package!r})
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(SOURCES[module.__name__], "<saf " + module.__name__ + ">", "exec", dont_inherit=True),
             module.__dict__)


sys.meta_path.insert(0, ShippedModules())
'''


def package_sources() -> dict[str, str]:
    """Every module of the node-side package by its name on a node: ``{"saf_verify_node.ring": source}``."""
    sources = {}
    for path in sorted(NODE_PACKAGE.glob("*.py")):
        name = SHIPPED_PACKAGE if path.stem == "__init__" else f"{SHIPPED_PACKAGE}.{path.stem}"
        sources[name] = path.read_text()
    return sources


def package_files() -> dict[str, str]:
    """The node-side package as files, for a directory on ``sys.path``: ``{"saf_verify_node/ring.py": source}``."""
    return {f"{SHIPPED_PACKAGE}/{path.name}": path.read_text() for path in sorted(NODE_PACKAGE.glob("*.py"))}


def program(body: str) -> str:
    """Python source that makes the node-side package importable as :data:`SHIPPED_PACKAGE`, then runs ``body``."""
    return _LOADER.format(sources=package_sources(), package=SHIPPED_PACKAGE) + body


def driver_program() -> str:
    """The verification driver as one ``python -c`` program (its arguments follow it: see node/driver.py)."""
    return program(f"from {SHIPPED_PACKAGE}.driver import main\nmain()\n")
