"""The verification's ``serve`` part: what the serving probe saw, in the report's JSON and its table.

``"serve": {"ok", "mode", "model", "endpoint", "reason"?, "detail"?, "answered", "expected",
"replicas": {host: {"node_id", "ttft_ms", "prompt_tps", "generation_tps", ...}}}``; a serve part that
is not ok is one of the cluster's problems, named by its reason.
"""

from __future__ import annotations

from typing import Any

KEPT = ("ok", "reason", "detail", "models", "answered", "expected", "replicas")


def serve_report(probe: dict[str, Any], serve: dict[str, Any]) -> dict[str, Any]:
    """The report's serve part from the probe's result and what was declared (mode, model, endpoint)."""
    part = {
        "mode": serve["mode"],
        "model": serve["model"],
        "endpoint": serve["endpoint"],
        **{key: probe[key] for key in KEPT if key in probe},
    }
    part["ok"] = probe.get("ok") is True
    if not part["ok"]:
        part.setdefault("reason", "no_probe_output")
    return part


def serve_problem(part: dict[str, Any]) -> str | None:
    """The cluster's problem when the model is not served as declared; None when it is."""
    if part["ok"]:
        return None
    return (
        f"serving {part['model']} ({part['mode']}) at {part['endpoint']} failed: {part['reason']}: "
        f"{part.get('detail', '')}; see the head's serving log (journalctl -u saf-serve / "
        "~/Library/Logs/saf/serve.err.log)"
    )


def serve_lines(report: dict[str, Any]) -> list[str]:
    """``serve (replicas) tiny at http://127.0.0.1:8000/v1: ok, 3/3 replicas`` and one line per replica."""
    part = report.get("serve")
    if not part:
        return []
    verdict = "ok" if part.get("ok") else f"FAIL ({part.get('reason')})"
    lines = [
        f"serve ({part['mode']}) {part['model']} at {part['endpoint']}: {verdict}, "
        f"{part.get('answered', 0)}/{part.get('expected', '?')} replicas answered"
    ]
    for name, replica in sorted((part.get("replicas") or {}).items()):
        generation = replica.get("generation_tps")
        lines.append(
            f"  {name}: first token {replica.get('ttft_ms')} ms, prompt {replica.get('prompt_tps')} tok/s, "
            + (
                f"generation {generation} tok/s"
                if generation is not None
                else f"{replica.get('end_to_end_tps')} tok/s end to end (the answer came in too few chunks to "
                "time its generation)"
            )
        )
    return lines
