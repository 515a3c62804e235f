"""Network facts: which interface carries a node's cluster ip, its MTU, and what it accepts.

macOS outputs are parsed tolerantly (tabs or spaces, blank lines, unknown lines ignored), as
Apple's tools print them; Linux reads ``ip -j addr`` (JSON).
"""

from __future__ import annotations

import json
import re

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.command import QuoteString


class MacInterfaces(FactBase[dict]):
    """``ifconfig``: ``{device: {"mtu": int, "inet": [ips], "pointtopoint": bool}}``."""

    default = dict

    def command(self) -> str:
        return "ifconfig"

    def process(self, output: list[str]) -> dict:
        interfaces: dict = {}
        current = None
        for line in output:
            header = re.match(r"^([A-Za-z0-9_.-]+):\s+flags=\S*<([^>]*)>.*?\bmtu\s+(\d+)", line)
            if header:
                current = header.group(1)
                interfaces[current] = {
                    "mtu": int(header.group(3)),
                    "inet": [],
                    "pointtopoint": "POINTOPOINT" in header.group(2).split(","),
                }
                continue
            address = re.match(r"^\s+inet\s+(\d+\.\d+\.\d+\.\d+)", line)
            if address and current:
                interfaces[current]["inet"].append(address.group(1))
        return interfaces


class MacHardwarePorts(FactBase[dict]):
    """``networksetup -listallhardwareports``: ``{device: hardware port name}``."""

    default = dict

    def command(self) -> str:
        return "networksetup -listallhardwareports"

    def process(self, output: list[str]) -> dict:
        ports, port = {}, None
        for line in output:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "Hardware Port":
                port = value
            elif key == "Device" and port:
                ports[value] = port
                port = None
        return ports


class MacMTU(FactBase[dict | None]):
    """``networksetup -getMTU``: ``{"active": int, "setting": int}`` (setting persists)."""

    def command(self, device: str) -> StringCommand:
        return StringCommand("networksetup -getMTU", QuoteString(device))

    def process(self, output: list[str]) -> dict | None:
        for line in output:
            found = re.search(r"Active MTU:\s*(\d+)(?:\s*\(Current Setting:\s*(\d+)\))?", line)
            if found:
                active = int(found.group(1))
                return {"active": active, "setting": int(found.group(2) or active)}
        return None


class MacValidMTURange(FactBase[tuple | None]):
    """``networksetup -listValidMTURange``: ``(low, high)``, or None if the device has no range."""

    def command(self, device: str) -> StringCommand:
        return StringCommand("networksetup -listValidMTURange", QuoteString(device), "2>/dev/null || true")

    def process(self, output: list[str]) -> tuple | None:
        for line in output:
            found = re.search(r"Valid MTU Range:\s*(\d+)\s*-\s*(\d+)", line)
            if found:
                return int(found.group(1)), int(found.group(2))
        return None


class LinuxInterfaces(FactBase[dict]):
    """``ip -j addr``: ``{ifname: {"mtu": int, "inet": [ips], "link_type": str, "wireless": bool}}``."""

    default = dict

    def command(self) -> str:
        return (
            "ip -j addr; echo; for d in /sys/class/net/*; do "
            '[ -d "$d/wireless" ] && echo "wireless ${d##*/}"; done; true'
        )

    def process(self, output: list[str]) -> dict:
        interfaces: dict = {}
        wireless = {line.split()[1] for line in output if line.startswith("wireless ")}
        for line in output:
            if line.lstrip().startswith("["):
                for entry in json.loads(line):
                    interfaces[entry["ifname"]] = {
                        "mtu": entry.get("mtu"),
                        "inet": [a["local"] for a in entry.get("addr_info", []) if a.get("family") == "inet"],
                        "link_type": entry.get("link_type", ""),
                        "wireless": entry["ifname"] in wireless,
                    }
        return interfaces


class RawMaxDatagram(FactBase[int | None]):
    """macOS's cap on a raw IP datagram (``net.inet.raw.maxdgram``; ping's ICMP is raw): a
    don't-fragment ping larger than this fails whatever the path MTU."""

    def requires_command(self) -> str:
        return "sysctl"

    def command(self) -> str:
        return "sysctl -n net.inet.raw.maxdgram 2>/dev/null || true"

    def process(self, output: list[str]) -> int | None:
        values = [line.strip() for line in output if line.strip()]
        return int(values[0]) if values and values[0].isdigit() else None
