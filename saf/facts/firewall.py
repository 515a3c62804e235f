"""Firewall facts: SAF's nftables table, its pf anchor, and macOS's application firewall.

The loaded rules carry ``saf-ray-<digest>`` (an nft rule comment, a pf label); these facts read it
back, so the deploy reloads rules only when what is loaded differs from what it renders. Apple's
tools are parsed tolerantly (spacing and wording vary between macOS versions; unknown lines are
ignored). The nft and pf facts need root: ask for them with ``_sudo=True``.
"""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from saf.firewall import DIGEST_PREFIX, NFT_TABLE, PF_ANCHOR

SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"
_DIGEST = re.compile(rf'(?:comment|label)\s+"{re.escape(DIGEST_PREFIX)}([0-9a-f]+)"')


def _digest(lines: list[str]) -> str | None:
    for line in lines:
        found = _DIGEST.search(line)
        if found:
            return found.group(1)
    return None


class NftRules(FactBase[dict | None]):
    """The table ``inet saf``: ``{"digest": "<hex>" or None}``, or None when it is not loaded."""

    def command(self) -> str:
        return f"nft list table {NFT_TABLE} 2>/dev/null || true"

    def process(self, output: list[str]) -> dict | None:
        if not any(line.strip().startswith(f"table {NFT_TABLE}") for line in output):
            return None
        return {"digest": _digest(output)}


class PfRules(FactBase[dict]):
    """pf and SAF's anchor: ``{"enabled", "anchor_point", "loaded": bool, "digest": "<hex>" or None}``.

    ``pfctl -s info`` starts with ``Status: Enabled for 0 days 01:02:03 ...`` (or Disabled);
    ``anchor_point``: the main ruleset evaluates ``anchor "com.apple/*"`` (Apple's stock pf.conf),
    without which SAF's anchor is never consulted; the anchor's rules are listed as pfctl normalises
    them (one line per rule, the label kept).
    """

    def command(self) -> str:
        return (
            f"pfctl -s info 2>/dev/null | grep -i '^status'; echo '-- main'; "
            f"pfctl -s rules 2>/dev/null | grep -F 'anchor \"com.apple/*\"'; echo '-- anchor'; "
            f"pfctl -a {PF_ANCHOR} -s rules 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict:
        sections: dict[str, list[str]] = {"status": [], "main": [], "anchor": []}
        section = "status"
        for line in output:
            marker = re.match(r"^-- (main|anchor)$", line.strip())
            if marker:
                section = marker.group(1)
            elif line.strip():
                sections[section].append(line)
        enabled = any(re.match(r"^\s*status\s*:\s*enabled", line, re.IGNORECASE) for line in sections["status"])
        anchor_point = any(line.strip().startswith('anchor "com.apple/*"') for line in sections["main"])
        return {
            "enabled": enabled,
            "anchor_point": anchor_point,
            "loaded": bool(sections["anchor"]),
            "digest": _digest(sections["anchor"]),
        }


class AppFirewall(FactBase[dict]):
    """macOS's application firewall: ``{"state": 0|1|2, "apps": {path: allowed}}``.

    ``--getglobalstate`` says ``Firewall is enabled. (State = 1)`` (0 off, 2 blocks all incoming);
    ``--listapps`` numbers each app (``1 :  /path``) with its rule on a following line,
    ``( Allow incoming connections )`` or ``( Block incoming connections )`` (a 2024 shape: ``name
    (state: 1)``, 1 allows, 4 blocks). State = 2 is block all on some versions, stealth mode on
    others: ``--getblockall`` decides when it answers.
    """

    default = dict

    def command(self) -> str:
        return (
            f"{SOCKETFILTERFW} --getglobalstate 2>/dev/null; {SOCKETFILTERFW} --getblockall 2>/dev/null; "
            f"{SOCKETFILTERFW} --listapps 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict:
        state, block_all = _global_state(output), _block_all(output)
        if state and block_all is not None:
            state = 2 if block_all else 1
        return {"state": state, "apps": _listed_apps(output)}


def _block_all(output: list[str]) -> bool | None:
    for line in output:
        lowered = line.lower()
        if "block all state set to" in lowered:  # Firewall has block all state set to disabled.
            return "enabled" in lowered
        if lowered.startswith("firewall is blocking all") and "state =" not in lowered:
            return True
    return None


def _global_state(output: list[str]) -> int:
    for line in output:
        lowered = line.lower()
        if "firewall is" not in lowered and "state =" not in lowered:
            continue
        number = re.search(r"state\s*=\s*(\d+)", lowered)
        if number:
            return int(number.group(1))
        if "disabled" in lowered or re.search(r"\boff\b", lowered):
            return 0
        if "blocking all" in lowered or "block all" in lowered:
            return 2
        if "enabled" in lowered or re.search(r"\bon\b", lowered):
            return 1
    return 0


def _listed_apps(output: list[str]) -> dict[str, bool]:
    apps: dict[str, bool] = {}
    path = None
    for line in output:
        named = re.match(r"^\s*(\S.*?)\s+\(state:\s*(\d+)\)\s*$", line)
        if named:
            apps[named.group(1)] = named.group(2) == "1"
            continue
        entry = re.match(r"^\s*\d+\s*:\s*(\S.*?)\s*$", line)
        if entry:
            path = entry.group(1)
            apps[path] = False  # a listed app whose rule line is missing is not known to be allowed
            continue
        rule = line.strip().lower()
        if path and ("allow" in rule or "block" in rule):
            apps[path] = "allow" in rule
            path = None
    return apps
