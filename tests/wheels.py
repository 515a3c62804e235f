"""Tiny real wheels for tests that run pip for real, offline: stand-ins for pinned packages."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def write_wheel(directory: Path, name: str, version: str, files: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel of ``name`` that pip installs: ``files`` (path: text), by default one
    module ``<name>/__init__.py`` holding ``VERSION``."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    contents = dict(files or {f"{module}/__init__.py": f"VERSION = {version!r}\n"})
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: saf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in contents.items()]
    contents[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def stand_in_stack(directory: Path, ray: str = "2.49.1", mlx: str = "0.29.1", numpy: str = "2.0.2") -> None:
    """Wheels named ray, mlx and numpy that import as the venv proof expects (no real code)."""
    write_wheel(directory, "ray", ray, {"ray/__init__.py": f"__version__ = {ray!r}\n"})
    write_wheel(directory, "mlx", mlx, {"mlx/__init__.py": "", "mlx/core.py": ""})
    write_wheel(directory, "numpy", numpy, {"numpy/__init__.py": f"__version__ = {numpy!r}\n"})


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
