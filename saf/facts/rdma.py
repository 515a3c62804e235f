"""RDMA over Thunderbolt on a Mac: whether the node could one day run MLX's ``jaccl`` backend.

Apple's TN3205 ("Low-latency communication with RDMA over Thunderbolt"): available from macOS 26.2
on Apple silicon Macs with Thunderbolt 5, enabled only from macOS Recovery (``rdma_ctl enable``),
checked with ``rdma_ctl status`` (``enabled``) and ``ibv_devices`` (one ``rdma_enN`` device per
Thunderbolt port). SAF provisions the ``ring`` backend; ``saf doctor`` reports this fact so that a
user knows which Macs are ready for RDMA. Read-only, and never a reason to stop a deploy.
"""

from __future__ import annotations

import re

from pyinfra.api import FactBase

RDMA_CTL_MARK = "--- rdma_ctl status"
IBV_DEVICES_MARK = "--- ibv_devices"
ABSENT = "absent"  # the command is not on this Mac (macOS before 26.2)
DEVICE = re.compile(r"^\s*(\S+)\s+([0-9a-fA-F]{16})\s*$")  # ``rdma_en2  e0c5797d9c8fac05``


class RdmaThunderbolt(FactBase[dict]):
    """``{"rdma_ctl": "enabled" | "disabled" | "absent" | <other text>, "devices": ["rdma_en2", ...]}``."""

    @staticmethod
    def default() -> dict:
        return {"rdma_ctl": ABSENT, "devices": []}

    def command(self) -> str:
        return (
            f"echo '{RDMA_CTL_MARK}'; if command -v rdma_ctl >/dev/null 2>&1; then rdma_ctl status 2>&1; "
            f"else echo {ABSENT}; fi; echo '{IBV_DEVICES_MARK}'; if command -v ibv_devices >/dev/null 2>&1; "
            f"then ibv_devices 2>&1; fi; true"
        )

    def process(self, output: list[str]) -> dict:
        sections: dict[str, list[str]] = {RDMA_CTL_MARK: [], IBV_DEVICES_MARK: []}
        current = None
        for line in output:
            if line.strip() in sections:
                current = line.strip()
            elif current and line.strip():
                sections[current].append(line.strip())
        status = " ".join(sections[RDMA_CTL_MARK]) or ABSENT
        devices = [found.group(1) for line in sections[IBV_DEVICES_MARK] if (found := DEVICE.match(line))]
        return {"rdma_ctl": status, "devices": devices}
