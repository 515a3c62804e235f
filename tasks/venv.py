"""One venv, at the same path on every node, with the pinned Ray and MLX: built beside the
current one, proven, then switched to; drifted pins are repaired. A venv root that holds only SAF's
venvs but no marker (made before SAF marked its roots) is marked, so that it stays SAF's."""

import shlex

from pyinfra import host, state
from pyinfra.facts.server import Arch, Home, Kernel, MacosVersion
from pyinfra.operations import server

from saf.facts.python import GlibcVersion
from saf.node_os import is_macos_kernel
from saf.operations.python import pinned_venv, venv_changes_current, venv_work
from saf.paths import on_control, on_node
from saf.preflight import saf_roots
from saf.progress import long_step
from saf.restarts import RestartReason, restart_ray_because
from saf.venv_spec import ROOT_MARKER, node_venv
from saf.wheelhouse import (
    check_pins_available,
    ensure_wheels,
    platform_key,
    wheel_platforms,
)

home = host.get_fact(Home)
spec = node_venv(host, home)
python = f"{on_node(host.data.pyenv_root, home)}/versions/{spec.python_version}/bin/python"

wheels = None
venv_root = saf_roots(host)[2]["venv_root"]
if venv_root["state"] == "ours" and not venv_root["marked"] and venv_work(spec) not in ("build", "repair"):
    server.shell(
        name=f"Mark {spec.root} as SAF's venv root ({ROOT_MARKER})",
        commands=[f"touch {shlex.quote(f'{spec.root}/{ROOT_MARKER}')}"],
    )
if venv_work(spec) in ("build", "repair"):
    # While the deploy is prepared, before any change: a pin with no wheel for this node's
    # platform and Python stops the whole run, naming the nearest pins that would work.
    kernel = host.get_fact(Kernel)
    os_version = host.get_fact(MacosVersion) if is_macos_kernel(kernel) else host.get_fact(GlibcVersion)
    arch = host.get_fact(Arch)
    node_platform = dict(
        platforms=wheel_platforms(kernel, arch, os_version),
        python_version=spec.python_version,
        key=platform_key(kernel, arch, os_version, spec.python_version),
        node=host.name,
    )
    if host.data.wheelhouse:
        wheels = [
            str(path)
            for path in ensure_wheels(
                on_control(host.data.wheelhouse, state.cwd),
                venv_name=spec.name,
                requirements=spec.requirements,
                **node_platform,
            )
        ]
    else:
        check_pins_available(spec.requirements, **node_platform)

# on a terminal: when the connection closes (a second Ctrl-C, a killed run) the node's shell and pip
# get SIGHUP and stop, instead of running on orphaned and removing what the next run uploads
# (saf/interrupt.py); a half-built venv has no completion marker and is built afresh
venv = pinned_venv(
    name=f"Venv {spec.name}",
    spec=spec,
    python=python,
    wheels=wheels,
    wheel_dir=f"{home}/.saf/wheels/{spec.name}",
    _get_pty=venv_work(spec) in ("build", "repair"),
)
if venv_work(spec) in ("build", "repair"):  # not for pruning leftovers, which takes a second
    long_step(
        state,
        host.name,
        venv,
        f"Building the venv {spec.name} (Ray, MLX and the pins)",
        "about 1 to 3 minutes (pip installs some 60 packages, from the pushed wheelhouse or the index)",
    )
# the Ray service restarts when what `current` holds changes (not when leftovers are pruned)
if venv_changes_current(spec):
    restart_ray_because(host, RestartReason.VENV_SWITCHED)
