"""Check that a freshly built Python is complete: every standard module SAF needs imports.

Run on the node by the new interpreter::

    python python_modules.py VERSION NODE MODULE...

A Python built without a library's headers starts, but lacks the module (no ``_ssl``: pip fails
later, at worst). Exits non-zero naming every module that does not import, and the fix.
"""

import importlib
import sys


def missing_modules(names: list) -> list:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (a module that fails to import for any reason is missing)
            missing.append(name)
    return missing


def main(version: str, node: str, names: list) -> "int | str":
    """0 when every module imports, else the message to exit with."""
    missing = missing_modules(names)
    if missing:
        return (
            f"SAF: Python {version} on {node} was built without {', '.join(missing)}: install the build "
            "dependencies (see README), then re-run to rebuild it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
