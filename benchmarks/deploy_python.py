"""The provisioning steps the overhead benchmark times: preflight, python and venv, as deploy.py runs them."""

from pyinfra import host, local

from saf.preflight import preflight_problems

local.include("tasks/preflight.py")
if not preflight_problems(host):
    local.include("tasks/python.py")
    local.include("tasks/venv.py")
