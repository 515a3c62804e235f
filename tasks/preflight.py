"""Preflight: stop a node that cannot be provisioned, before anything changes on it."""

from pyinfra import host

from saf.operations.stop import stop_host
from saf.preflight import preflight_problems

problems = preflight_problems(host)
if problems:
    stop_host(name="Preflight", reason=" ".join(problems))
