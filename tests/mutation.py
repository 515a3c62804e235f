"""Mutation testing of SAF modules with mutmut, in a private copy of the tree.

Usage (from the project directory, with the project's venv)::

    .venv/bin/python tests/mutation.py saf/spec --tests "tests/unit/test_spec.py"
    .venv/bin/python tests/mutation.py saf/operations saf/facts --tests "tests/plan" --name ops
    .venv/bin/python tests/mutation.py saf/verify --report       # the last run's results again

TARGET is a package directory or a module file under ``saf/``. The script

1. copies the tree to ``../mut-<name>/`` (``--name``, default from the targets; ``.venv``,
   ``.git``, ``.saf``, caches and ``mutants`` left out), so that mutmut never writes into the
   shared checkout while others run tests in it;
2. writes mutmut's configuration into the copy's pyproject.toml: only the targets are mutated,
   and only the tests of ``--tests`` run (pytest arguments; default ``tests/unit tests/plan``;
   tests/lab is never selected, and ``SAF_SKIP_LAB=1`` is set anyway);
3. proves that the tests import the *copied* ``saf`` and not the editable install of the shared
   checkout (``saf`` is pip-installed editable into .venv): a deliberate mutant (a ``raise``
   appended to the first target module) must fail the selected tests; then the module is
   restored (``--no-canary`` skips this). mutmut's own "forced fail test" then checks the same
   for its ``mutants/`` tree;
4. runs ``mutmut run`` in the copy (``--max-children``, default 1: the machine is shared), and
5. prints, per module, the mutants, killed, survived, untested, and the survival rate, then
   every surviving mutant's name (``--diffs`` prints each one's diff too).

Select the tests that cover the targets (mutmut runs, for each mutant, only the selected tests
that call the mutated function): the narrower the selection, the faster the run. A mutant's
diff: ``cd ../mut-<name> && ../main/.venv/bin/python -m mutmut show <mutant name>``.
``--resume`` keeps the copy's ``mutants/`` (mutmut's cache) instead of starting afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_TESTS = "tests/unit tests/plan"
NOT_COPIED = {".venv", ".git", ".saf", "mutants", ".pytest_cache", "__pycache__", ".mypy_cache", ".ruff_cache"}
CANARY = "saf-mutation-canary"
# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code); anything else is "other"
KILLED_CODES = {1, 3, 36, 24, -24, 152, 255, 37}  # failed tests, pytest error, timeout, type check
SURVIVED_CODES = {0}
UNTESTED_CODES = {5, 33}
SPINNER = re.compile("[\u2800-\u28ff]")  # mutmut's progress frames start with a braille spinner


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="package directories or module files under saf/, e.g. saf/spec")
    parser.add_argument("--tests", default=DEFAULT_TESTS,
                        help=f"pytest arguments selecting the tests (default: {DEFAULT_TESTS!r}); never tests/lab")
    parser.add_argument("--name", help="the copy is ../mut-<name> (default: from the targets)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    parser.add_argument("--resume", action="store_true", help="keep mutmut's cache (mutants/) from the last run")
    parser.add_argument("--no-canary", action="store_true", help="skip the check that tests import the copy")
    parser.add_argument("--report", action="store_true", help="only print the last run's results")
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    return parser.parse_args(argv)


def target_paths(targets: list[str]) -> list[str]:
    """The targets as project-relative paths; each must exist and lie in a top-level package."""
    paths = []
    for target in targets:
        relative = Path(target).resolve().relative_to(PROJECT_DIR) if Path(target).is_absolute() else Path(target)
        relative = Path(os.path.normpath(relative))
        if not (PROJECT_DIR / relative).exists():
            raise SystemExit(f"mutation: {target} does not exist in {PROJECT_DIR}")
        if len(relative.parts) < 2 or relative.parts[0] in ("tests", ".venv"):
            raise SystemExit(f"mutation: {target} is not a module or package inside a package like saf/")
        paths.append(relative.as_posix())
    return paths


def default_name(paths: list[str]) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "-", Path(p).with_suffix("").as_posix()).strip("-") for p in paths)


def lab_free(tests: list[str]) -> list[str]:
    if any(arg.startswith("tests/lab") or "/tests/lab" in arg for arg in tests):
        raise SystemExit("mutation: tests/lab is never run by mutation testing (it needs the shared lab)")
    return tests


# --- The private copy -------------------------------------------------------------------------


def sync_copy(workdir: Path, resume: bool) -> None:
    """Make workdir a copy of the project (mutants/ kept only when resuming)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for entry in workdir.iterdir():
        if entry.name == "mutants" and resume:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    ignore = shutil.ignore_patterns(*NOT_COPIED, "*.pyc")
    for entry in PROJECT_DIR.iterdir():
        if entry.name in NOT_COPIED:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, workdir / entry.name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(entry, workdir / entry.name, follow_symlinks=False)


def only_mutate_patterns(paths: list[str]) -> list[str]:
    """mutmut's fnmatch patterns (``*`` crosses ``/``): a package's every file, or one file."""
    return [p if p.endswith(".py") else f"{p.rstrip('/')}/*" for p in paths]


def mutmut_config(workdir: Path, paths: list[str], tests: list[str]) -> str:
    packages = sorted({Path(p).parts[0] for p in paths})
    also_copy = sorted(e.name for e in workdir.iterdir()
                       if e.name not in {*packages, "tests", "pyproject.toml", "mutants"})
    values = {
        "source_paths": packages,
        "only_mutate": only_mutate_patterns(paths),
        "also_copy": also_copy,
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "pytest_add_cli_args_test_selection": tests,
        "use_git_change_detection": False,
    }
    # JSON strings, lists and booleans are valid TOML values
    return "\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def configure_copy(workdir: Path, paths: list[str], tests: list[str]) -> None:
    pyproject = workdir / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text(encoding="utf-8"))
    pyproject.write_text(text + mutmut_config(workdir, paths, tests), encoding="utf-8")


def child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MUTANT_UNDER_TEST")}
    env["SAF_SKIP_LAB"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def first_module(workdir: Path, path: str) -> Path:
    target = workdir / path
    return target if target.is_file() else sorted(target.rglob("*.py"))[0]


def check_canary(workdir: Path, paths: list[str], tests: list[str]) -> None:
    """A deliberate mutant of the copy must fail the selected tests, or they import another saf."""
    module = first_module(workdir, paths[0])
    original = module.read_text(encoding="utf-8")
    module.write_text(f"{original}\nraise RuntimeError({CANARY!r})\n", encoding="utf-8")
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                cwd=workdir, env=child_env(), capture_output=True, text=True)
    finally:
        module.write_text(original, encoding="utf-8")
    if result.returncode == 0 or CANARY not in result.stdout + result.stderr:
        raise SystemExit(f"mutation: a deliberate mutant of {module.relative_to(workdir)} was not killed by "
                         f"{' '.join(tests)}: the tests do not import the copy in {workdir}, or do not cover it")
    print(f"mutation: canary killed ({module.relative_to(workdir)}): the tests import the copy's saf")


def run_mutmut(workdir: Path, max_children: int) -> int:
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    print("mutation:", shlex.join(command), "in", workdir, flush=True)
    with subprocess.Popen(command, cwd=workdir, env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        print_without_spinner_frames(process.stdout)
    return process.returncode


def print_without_spinner_frames(lines) -> None:
    """mutmut redraws its progress in place; outside a terminal print only each step's last frame."""
    frame = ""
    for line in lines:
        for part in re.split(r"[\r\n]+", line):
            if SPINNER.match(part.strip()):
                frame = part.strip()
            elif part.strip():
                if frame:
                    print(frame)
                    frame = ""
                print(part, flush=True)
    if frame:
        print(frame)


# --- The report -------------------------------------------------------------------------------


@dataclass
class ModuleResult:
    module: str
    codes: dict[str, int | None]

    def count(self, codes: set[int]) -> int:
        return sum(1 for code in self.codes.values() if code in codes)

    @property
    def total(self) -> int:
        return len(self.codes)

    @property
    def killed(self) -> int:
        return self.count(KILLED_CODES)

    @property
    def survivors(self) -> list[str]:
        return sorted(name for name, code in self.codes.items() if code in SURVIVED_CODES | UNTESTED_CODES)

    @property
    def survival_rate(self) -> float:
        return (self.total - self.killed) / self.total if self.total else 0.0


def read_results(workdir: Path, paths: list[str]) -> list[ModuleResult]:
    results = []
    for pattern in only_mutate_patterns(paths):
        base = workdir / "mutants" / (pattern[:-2] if pattern.endswith("/*") else pattern)
        metas = sorted(base.rglob("*.py.meta")) if base.is_dir() else [Path(f"{base}.meta")]
        for meta in metas:
            if meta.exists():
                codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
                results.append(ModuleResult(meta.relative_to(workdir / "mutants").as_posix()[:-5], codes))
    return results


def print_report(workdir: Path, results: list[ModuleResult], diffs: bool) -> None:
    print(f"\n{'module':44} {'mutants':>7} {'killed':>6} {'survived':>8} {'untested':>8} {'other':>5} {'survival':>8}")
    for r in results:
        survived, untested = r.count(SURVIVED_CODES), r.count(UNTESTED_CODES)
        other = r.total - r.killed - survived - untested
        print(f"{r.module:44} {r.total:7} {r.killed:6} {survived:8} {untested:8} {other:5} {r.survival_rate:8.1%}")
    total = sum(r.total for r in results)
    killed = sum(r.killed for r in results)
    if total:
        print(f"{'all':44} {total:7} {killed:6} {'':8} {'':8} {'':5} {(total - killed) / total:8.1%}")
    for r in results:
        for name in r.survivors:
            print(f"  {'survived' if r.codes[name] in SURVIVED_CODES else 'untested'}: {name}")
            if diffs:
                shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=workdir,
                                       env=child_env(), capture_output=True, text=True)
                print("    " + shown.stdout.strip().replace("\n", "\n    "))
    other_codes = Counter(code for r in results for code in r.codes.values()
                          if code not in KILLED_CODES | SURVIVED_CODES | UNTESTED_CODES)
    if other_codes:
        print(f"  other exit codes (see mutmut.stats.status_by_exit_code): {dict(other_codes)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = target_paths(args.targets)
    tests = lab_free(shlex.split(args.tests))
    workdir = PROJECT_DIR.parent / f"mut-{args.name or default_name(paths)}"
    if not args.report:
        sync_copy(workdir, args.resume)
        configure_copy(workdir, paths, tests)
        if not args.no_canary:
            check_canary(workdir, paths, tests)
        if run_mutmut(workdir, args.max_children) != 0:
            print("mutation: mutmut failed (see above); the results below are incomplete", file=sys.stderr)
            return 1
    results = read_results(workdir, paths)
    if not results:
        print(f"mutation: no results in {workdir / 'mutants'}; run without --report first", file=sys.stderr)
        return 1
    print_report(workdir, results, args.diffs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
