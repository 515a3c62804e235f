"""`saf doctor`: every node's findings as a table, read-only (only facts are read). A node on
which the deploy would stop gets a failing step naming the fix, so the run exits non-zero."""

from pyinfra import host, logger

from saf.doctor import doctor_findings, findings_table
from saf.operations.stop import stop_host
from saf.preflight import Verdict

findings = doctor_findings(host)
logger.info(f"\n--> saf doctor: {findings_table(host.name, findings)}\n")
cannot = [finding.fix for finding in findings if finding.verdict is Verdict.CANNOT]
if cannot:
    stop_host(name="Doctor", reason=f"the deploy would stop on {host.name}: " + " ".join(cannot))
