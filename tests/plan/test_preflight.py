"""Preflight, planned against fixture facts: who goes ahead and who is stopped, with what words."""

from __future__ import annotations

from tests.facts import converged_mac, fresh_debian, fresh_mac, saf_roots
from tests.planning import Raw

XCODE_MISSING = Raw("")  # `xcode-select -p` printed nothing on stdout (exit 2, message on stderr)
WITH_HOMEBREW = {"files.File:/opt/homebrew/bin/brew": {"mode": 755, "size": 1000}}
LOGGED_IN = {"server.Command:id -u": "501", "launchd.LaunchdDomain:gui/501": Raw("reachable\n")}


def test_fresh_macs_pass_preflight(plan):
    plans = plan({name: fresh_mac() for name in ("alpha", "beta", "gamma")})
    assert set(plans) == {"alpha", "beta", "gamma"}
    for host_plan in plans.values():
        assert not any("Preflight" in op.name for op in host_plan.ops)


def test_intel_mac_is_stopped_naming_host_and_fix(plan):
    plans = plan({"alpha": fresh_mac(), "beta": fresh_mac(**{"server.Arch": "x86_64"}), "gamma": fresh_mac()})
    stop = plans["beta"].op("Preflight")
    assert len(stop.commands) == 1
    assert "beta is a Mac with a x86_64 processor" in stop.commands[0]
    assert "Apple Silicon" in stop.commands[0]
    # the other nodes are not stopped
    assert not any("Preflight" in op.name for op in plans["alpha"].ops + plans["gamma"].ops)


def test_missing_command_line_tools_stops_with_install_hint(plan):
    plans = plan({"alpha": fresh_mac(**{"system.XcodeCommandLineTools": XCODE_MISSING}),
                  "beta": fresh_mac(), "gamma": fresh_mac()})
    reason = plans["alpha"].op("Preflight").commands[0]
    assert "alpha has no Xcode Command Line Tools" in reason
    assert "xcode-select --install" in reason


def test_old_macos_is_stopped(plan):
    plans = plan({"alpha": fresh_mac(**{"server.MacosVersion": "13.4"}), "beta": fresh_mac(), "gamma": fresh_mac()})
    assert "alpha runs macOS 13.4, older than 13.5" in plans["alpha"].op("Preflight").commands[0]


def test_full_disk_and_sudo_problems_are_reported_together(plan):
    tiny_disk = Raw("Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/disk3s5 100 90 1048576 90% /\n")
    plans = plan({"alpha": fresh_mac(), "beta": fresh_mac(),
                  "gamma": fresh_mac(**{"system.FreeDiskKiB": tiny_disk, "system.PasswordlessSudo": Raw("no\n")})})
    reason = plans["gamma"].op("Preflight").commands[0]
    assert "gamma has 1.0 GB free" in reason
    assert "sudo asks gamma's SSH user for a password" in reason


def test_sudo_is_not_required_when_settings_say_so(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
               "settings": {"use_sudo": False}}
    plans = plan({"alpha": fresh_mac(**{"system.PasswordlessSudo": Raw("no\n"), **WITH_HOMEBREW, **LOGGED_IN})},
                 cluster=cluster)
    assert not any("Preflight" in op.name for op in plans["alpha"].ops)


def test_without_sudo_a_mac_needs_homebrew_already(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
               "settings": {"use_sudo": False}}
    reason = plan({"alpha": fresh_mac(**LOGGED_IN)}, cluster=cluster)["alpha"].op("Preflight").commands[0]
    assert "alpha has no Homebrew (/opt/homebrew/bin/brew)" in reason and "use_sudo: true" in reason


def test_a_mac_whose_launchd_domain_is_unreachable_is_stopped(plan):
    agent = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
             "settings": {"macos_service": "agent"}}
    facts = fresh_mac(**{**LOGGED_IN, "launchd.LaunchdDomain:gui/501": Raw("unreachable\n")})
    reason = plan({"alpha": facts}, cluster=agent)["alpha"].op("Preflight").commands[0]
    assert "launchctl cannot reach the gui/501 domain on alpha" in reason and "log in" in reason


def test_a_mac_without_a_metal_gpu_is_stopped(plan):
    plans = plan({"alpha": fresh_mac(**{"gpu.AppleGPU": Raw("")}), "beta": fresh_mac(), "gamma": fresh_mac()})
    assert "alpha shows no GPU with Metal support" in plans["alpha"].op("Preflight").commands[0]


def test_debian_and_unsupported_systems(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"},
                         {"name": "beta", "role": "worker", "address": "10.0.0.2"},
                         {"name": "gamma", "role": "worker", "address": "10.0.0.3"}],
               "settings": {"wheelhouse": ""}}
    plans = plan({"alpha": fresh_debian(), "beta": fresh_debian(**{"server.Arch": "riscv64"}),
                  "gamma": fresh_debian(**{"server.Kernel": "FreeBSD"})}, cluster=cluster)
    assert not any("Preflight" in op.name for op in plans["alpha"].ops)
    assert "beta is a Linux riscv64 machine" in plans["beta"].op("Preflight").commands[0]
    assert "gamma runs FreeBSD" in plans["gamma"].op("Preflight").commands[0]


def test_limit_plans_only_the_limited_node(plan):
    plans = plan({"gamma": fresh_mac()}, limit=["gamma"])
    assert list(plans) == ["gamma"]


# --- venv_root and pyenv_root: SAF's, or refused before anything changes ----------------------------


def test_fresh_and_converged_nodes_own_their_folders(plan):
    plans = plan({"alpha": fresh_mac(), "beta": converged_mac(role="worker", ip="192.168.1.42"),
                  "gamma": fresh_mac(**saf_roots(venv="empty", pyenv="empty"))})
    assert not any("Preflight" in op.name for host_plan in plans.values() for op in host_plan.ops)


def test_a_root_of_only_saf_s_venvs_from_before_the_marker_is_adopted_and_marked(plan):
    adopted = converged_mac(**saf_roots(venv="ours", pyenv="ours"))
    alpha = plan({"alpha": adopted, "beta": fresh_mac(), "gamma": fresh_mac()})["alpha"]
    assert not any("Preflight" in op.name for op in alpha.ops)
    mark = alpha.op("as SAF's venv root")
    assert mark.commands == ["touch /Users/arthurdell/saf/venv/.saf-venv-root"]


def test_a_venv_root_of_the_user_s_is_refused_before_anything_changes_with_the_fix(plan):
    foreign = fresh_mac(**saf_roots(venv="foreign", entry="Documents"))
    alpha = plan({"alpha": foreign, "beta": fresh_mac(), "gamma": fresh_mac()})["alpha"]
    reason = alpha.op("Preflight").commands[0]
    assert ("venv_root /Users/arthurdell/saf/venv on alpha already exists and holds 'Documents', which SAF did "
            "not make") in reason
    assert "Set venv_root in the cluster file's settings" in reason and ".saf-venv-root" in reason
    assert [op.name for op in alpha.changing_ops] == [op.name for op in alpha.ops if "Preflight" in op.name]


def test_a_marked_venv_root_holding_the_user_s_folder_is_still_saf_s(plan):
    kept = converged_mac(**saf_roots(venv="foreign", entry="notes", pyenv="ours", marked=True))
    alpha = plan({"alpha": kept, "beta": fresh_mac(), "gamma": fresh_mac()})["alpha"]
    assert not any("Preflight" in op.name for op in alpha.ops)


def test_a_pyenv_root_that_is_not_pyenv_s_is_refused(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}
    facts = fresh_debian(**saf_roots(pyenv="foreign", entry="projects"))
    reason = plan({"alpha": facts}, cluster=cluster)["alpha"].op("Preflight").commands[0]
    assert "pyenv_root /home/saf/.pyenv on alpha holds 'projects' and is not a pyenv checkout" in reason
    assert "Set pyenv_root in the cluster file's settings" in reason


def test_a_file_in_place_of_venv_root_is_refused(plan):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}]}
    reason = plan({"alpha": fresh_debian(**saf_roots(venv="notdir"))}, cluster=cluster)["alpha"].op(
        "Preflight").commands[0]
    assert "venv_root /home/saf/saf/venv on alpha is a file, not a folder" in reason
