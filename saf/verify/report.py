"""The verification report on the control machine: a table for people, JSON files for tools."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from saf.serve.report import serve_lines
from saf.verify.judgement import passed
from saf.verify.judgement import problems as all_problems

COLUMNS = (
    ("node", "name"),
    ("role", "role"),
    ("hostname", "hostname"),
    ("python", "python"),
    ("ray", "ray"),
    ("mlx", "mlx"),
    ("device", "device"),
    ("size f32/f16", "size_f32"),
    ("GFLOPS f32", "gflops_f32"),
    ("GFLOPS f16", "gflops_f16"),
    ("MTU path", "mtu_path_ok"),
    ("Gbit/s (link)", "gbit_s"),
    ("verdict", "ok"),
)


def _device(node: dict) -> str:
    """``gpu NVIDIA H200``: the kind MLX computed on, then the device's name."""
    kind, name = node.get("device"), node.get("device_name")
    if kind is None:
        return "-"
    return f"{kind} {name}" if name else str(kind)


def _size(node: dict, dtype: str) -> str:
    """``4096``, or ``8192x4`` when four products made one timed step."""
    size, batch = node.get(f"size_{dtype}"), node.get(f"batch_{dtype}") or 1
    if size is None:
        return "-"
    return f"{size}x{batch}" if batch > 1 else str(size)


def _throughput(node: dict) -> str:
    """``9.41 (10)``: measured head -> node, and the link speed where the OS reports it."""
    measured, link = node.get("gbit_s"), node.get("link_gbit_s")
    if measured is None:
        return "-"
    return f"{measured} ({link:g})" if link else str(measured)


def _cell(key: str, value) -> str:
    if key == "ok":
        return "OK" if value else "FAIL"
    if key == "mtu_path_ok":
        return "-" if value is None else ("ok" if value else "FAIL")
    return "-" if value is None else str(value)


def _row(node: dict) -> list[str]:
    special = {"gbit_s": _throughput, "device": _device, "size_f32": lambda n: f"{_size(n, 'f32')}/{_size(n, 'f16')}"}
    return [special[key](node) if key in special else _cell(key, node.get(key)) for _, key in COLUMNS]


def table(report: dict) -> str:
    """The report as an aligned text table, the collective's lines, then one line per problem."""
    rows = [[title for title, _ in COLUMNS]] + [_row(node) for node in report.get("nodes", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows]
    problems = all_problems(report)
    verdict = "cluster verified: OK" if passed(report) else f"cluster verification FAILED ({len(problems)} problems)"
    return "\n".join(
        [
            *lines,
            *collective_lines(report),
            *serve_lines(report),
            *step_lines(report),
            *protection_lines(report),
            *(f"  - {problem}" for problem in problems),
            verdict,
        ]
    )


def protection_lines(report: dict) -> list[str]:
    """``Ray protection: token auth and firewall``: what keeps strangers from Ray's job API, as the
    cluster file sets it (``token auth``, ``firewall``, ``none: trusted network``...)."""
    return [f"Ray protection: {report['protection']}"] if report.get("protection") else []


def step_lines(report: dict) -> list[str]:
    """Where the driver's time went, in the order the steps ran: ``steps: connect 2.1 s | paths 0.4 s ...``."""
    steps = report.get("step_seconds") or {}
    return [f"steps: {' | '.join(f'{name} {seconds:.1f} s' for name, seconds in steps.items())}"] if steps else []


def collective_lines(report: dict) -> list[str]:
    """``MLX all_sum (ring, 3 ranks): ok`` and its bus bandwidth per size, beside the TCP figures
    (head -> each node, GB/s like the bus bandwidth) and the slowest link."""
    collective = report.get("collective")
    if not collective:
        return []
    verdict = "ok" if collective.get("ok") else "FAIL"
    lines = [f"MLX all_sum ({collective.get('backend')}, {collective.get('ranks')} ranks): {verdict}"]
    figures = collective.get("busbw_gbyte_s") or {}
    if figures:
        sizes = " | ".join(f"{mb} MB {gbyte_s:.2f}" for mb, gbyte_s in sorted(figures.items(), key=lambda i: int(i[0])))
        lines.append(f"  bus bandwidth GB/s: {sizes}")
        tcp = [n["gbit_s"] / 8 for n in report.get("nodes", []) if isinstance(n.get("gbit_s"), (int, float))]
        links = [n["link_gbit_s"] for n in report.get("nodes", []) if isinstance(n.get("link_gbit_s"), (int, float))]
        if tcp:
            lines.append(
                f"  TCP head -> node GB/s: {min(tcp):.2f}-{max(tcp):.2f}"
                + (f"; slowest link {min(links):g} Gbit/s ({min(links) / 8:.2f} GB/s)" if links else "")
            )
    return lines


def write(report: dict, directory: Path) -> Path:
    """Write ``<UTC timestamp>.json`` and ``latest.json`` under ``directory``; return the first."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = {**report, "generated_at": stamp}
    path = directory / f"{stamp}.json"
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path
