"""Hostile values against what SAF writes in another language: systemd units, plists, nft rules and ssh
argv. Each value here got past the cluster file's validation (built with ``model_construct`` or given
directly, as defence in depth): it must not change the shape of what is written or run."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api.util import get_template

from saf.firewall import NFT_TEMPLATE, PF_TEMPLATE, FirewallAddressError, firewall_rules
from saf.service import RayService
from saf.spec import NodeSpec, load_defaults
from saf.ssh import scp_argv, ssh_argv
from saf.templating import UnsafeValueError, systemd_word, unit_template_env
from tests.conftest import PROJECT_DIR

INJECTION = '\nExecStartPre=+/bin/sh -c "touch /root/owned"\n'
HOSTILE = ["/opt/my venv", 'a"b', "back\\slash", "50%n", "$HOME", "${PATH}", INJECTION, "tab\there", ";", "'q'"]
PLIST_HOSTILE = ["</string><key>x</key><string>", "a & b", "\"quoted\" 'single'", "line\nbreak", "<!-- c -->",
                 "]]>", "&amp;"]


# --- systemd units ----------------------------------------------------------------------------------


def systemd_words(line: str) -> list[str]:
    """An Exec line's arguments as systemd reads them (systemd.syntax(7)): split on blanks, double
    quotes grouping, C escapes undone, ``%%`` -> ``%`` and ``$$`` -> ``$``."""
    words, word, quoted, started, i = [], [], False, False, 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
    while i < len(line):
        char = line[i]
        if char == "\\" and quoted:
            nxt = line[i + 1]
            if nxt == "x":
                word.append(chr(int(line[i + 2:i + 4], 16)))
                i += 4
                continue
            word.append(escapes[nxt])
            i += 2
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        elif char in "%$" and line[i + 1:i + 2] == char:
            word.append(char)
            started = True
            i += 1
        else:
            word.append(char)
            started = True
        i += 1
    assert not quoted, f"unbalanced quotes in {line!r}"
    if started:
        words.append("".join(word))
    return words


def unit_lines(text: str) -> list[tuple[str, str]]:
    """A unit, line by line: ``("[Section]", "")`` or ``(key, value)``; comments and blanks skipped."""
    parsed = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            parsed.append((line, ""))
        else:
            assert re.match(r"^[A-Za-z]+=", line), f"not a key=value line: {line!r}"
            key, value = line.split("=", 1)
            parsed.append((key, value))
    return parsed


def ray_unit(venv: str, *, home: str = "/home/saf", user: str = "saf", argument: str = "--block",
             environment: tuple[tuple[str, str], ...] = ()) -> str:
    service = RayService("worker", user, home, venv, ("start", "--address=10.0.0.1:6380", argument),
                         (("HOME", home), ("PATH", f"{venv}/bin:/usr/bin"), *environment))
    return get_template(str(PROJECT_DIR / "templates/ray.service.j2"), unit_template_env()).render(service=service)


BENIGN_UNIT = ray_unit("/home/saf/saf/venv/current", environment=(("EXTRA", "x"),))


@pytest.mark.parametrize("value", [v for v in HOSTILE if v != ";"])  # a lone ';' is refused: see below
def test_a_hostile_venv_path_or_argument_keeps_the_units_lines_and_stays_one_argument(value):
    venv = f"/v/{value}"
    unit = ray_unit(venv, argument=value, environment=(("EXTRA", value),))
    lines, benign = unit_lines(unit), unit_lines(BENIGN_UNIT)
    assert [key for key, _ in lines] == [key for key, _ in benign]
    values = dict(lines)
    assert systemd_words(values["ExecStart"]) == [f"{venv}/bin/ray", "start", "--address=10.0.0.1:6380", value]
    assert systemd_words(values["ExecStop"]) == [f"{venv}/bin/ray", "stop"]
    environment = [systemd_words(v) for k, v in lines if k == "Environment"]
    assert environment == [["HOME=/home/saf"], [f"PATH={venv}/bin:/usr/bin"], [f"EXTRA={value}"]]


def test_ordinary_values_are_written_bare_as_before():
    values = dict(unit_lines(BENIGN_UNIT))
    assert values["ExecStart"] == "/home/saf/saf/venv/current/bin/ray start --address=10.0.0.1:6380 --block"
    assert "Environment=PATH=/home/saf/saf/venv/current/bin:/usr/bin" in BENIGN_UNIT


@pytest.mark.parametrize("venv", ["+/opt/venv", "-/opt/venv", "@/opt/venv", "!!/opt/venv", "opt/venv", "~/venv"])
def test_a_program_that_is_not_an_absolute_path_is_refused_never_read_as_a_prefix(venv):
    with pytest.raises(UnsafeValueError, match="must be an absolute path"):
        ray_unit(venv)


def test_a_lone_semicolon_argument_is_refused():
    with pytest.raises(UnsafeValueError, match="a lone ';' starts another command"):
        ray_unit("/v", argument=";")


@pytest.mark.parametrize(("field", "value"), [("home", "/home/saf\nExecStartPre=+/bin/true"), ("user", "saf\rx"),
                                              ("user", "saf\x00")])
def test_a_user_or_working_directory_with_a_control_character_is_refused_with_the_fix(field, value):
    with pytest.raises(UnsafeValueError) as refused:
        ray_unit("/v", **{field: value})
    message = str(refused.value)
    assert "systemd unit" in message and "cluster file" in message and "re-run" in message


def test_a_percent_in_a_bare_value_is_not_a_specifier():
    assert dict(unit_lines(ray_unit("/v", home="/home/50%h")))["WorkingDirectory"] == "/home/50%%h"


def test_an_environment_key_that_is_not_a_variable_name_is_refused():
    with pytest.raises(UnsafeValueError, match="environment variable's name"):
        ray_unit("/v", environment=(("A B", "x"),))


def test_the_mtu_and_firewall_units_quote_their_words():
    mtu = get_template(str(PROJECT_DIR / "templates/saf-mtu.service.j2"), unit_template_env()).render(
        ip="/usr/sbin/ip", interface="eth0 mtu 1 ; x", mtu=9000)
    assert systemd_words(dict(unit_lines(mtu))["ExecStart"]) == [
        "/usr/sbin/ip", "link", "set", "dev", "eth0 mtu 1 ; x", "mtu", "9000"]
    firewall = get_template(str(PROJECT_DIR / "templates/saf-firewall.service.j2"), unit_template_env()).render(
        nft="/usr/sbin/nft", rules_file="/etc/saf/a b.nft")
    assert systemd_words(dict(unit_lines(firewall))["ExecReload"]) == ["/usr/sbin/nft", "-f", "/etc/saf/a b.nft"]
    with pytest.raises(UnsafeValueError):
        get_template(str(PROJECT_DIR / "templates/saf-mtu.service.j2"), unit_template_env()).render(
            ip="/usr/sbin/ip", interface="eth0\nExecStartPre=+/bin/true", mtu=9000)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("value", [v for v in HOSTILE if v != ";"])
def test_systemd_itself_reads_the_hostile_unit_without_complaint(tmp_path, value):
    """``systemd-analyze verify`` parses the unit as systemd does; a quoting slip shows up as an error."""
    path = tmp_path / "saf-ray-worker.service"
    path.write_text(ray_unit("/usr", argument=value, environment=(("EXTRA", value),)).replace(
        "/usr/bin/ray", "/usr/bin/true"))
    checked = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in checked.stderr.splitlines()
                if "saf-ray-worker.service" in line and "User" not in line and "network-online" not in line]
    assert problems == [], checked.stderr


def test_systemd_word_quotes_only_what_needs_it():
    assert systemd_word("--node-ip-address=10.0.0.2") == "--node-ip-address=10.0.0.2"
    assert systemd_word("a b") == '"a b"' and systemd_word("$x") == '"$$x"' and systemd_word("") == '""'


# --- plists -------------------------------------------------------------------------------------------


def ray_plist(value: str) -> dict:
    service = RayService(f"worker{value}", value, f"/Users/{value}", f"/v/{value}", ("start", value),
                         (("HOME", value), (f"K{value}", value)), system=True)
    text = get_template(str(PROJECT_DIR / "templates/ray.plist.j2")).render(
        service=service, daemon=True, logs=f"/logs/{value}")
    return plistlib.loads(text.encode())


@pytest.mark.parametrize("value", PLIST_HOSTILE)
def test_a_hostile_value_in_the_ray_plist_stays_a_string_and_adds_no_key(value):
    parsed, benign = ray_plist(value), ray_plist("x")
    assert sorted(parsed) == sorted(benign)
    assert parsed["Label"] == f"org.saf.ray-worker{value}" and parsed["UserName"] == value
    assert parsed["ProgramArguments"] == [f"/v/{value}/bin/ray", "start", value]
    assert parsed["EnvironmentVariables"] == {"HOME": value, f"K{value}": value}
    assert parsed["WorkingDirectory"] == f"/Users/{value}"
    assert parsed["StandardOutPath"] == f"/logs/{value}/ray-worker{value}.log"


@pytest.mark.parametrize("value", PLIST_HOSTILE)
def test_a_hostile_value_in_the_firewall_plist_stays_a_string(value):
    text = get_template(str(PROJECT_DIR / "templates/saf-firewall.plist.j2")).render(
        label=value, anchor=value, rules_file=value)
    parsed = plistlib.loads(text.encode())
    assert sorted(parsed) == ["Label", "ProgramArguments", "RunAtLoad", "StandardErrorPath"]
    assert parsed["Label"] == value and parsed["ProgramArguments"] == ["/sbin/pfctl", "-E", "-a", value, "-f", value]


# --- firewall rules -----------------------------------------------------------------------------------

DEFAULTS = load_defaults(PROJECT_DIR)
SCOPED = "fe80::1%eth0\n}\nchain evil { type filter hook input priority -1; policy accept; }\n"


def rules_data(*ips: str) -> SimpleNamespace:
    nodes = [{"name": f"n{i}", "role": "head" if i == 0 else "worker", "ip": ip} for i, ip in enumerate(ips)]
    return SimpleNamespace(**{**DEFAULTS, "cluster_nodes": nodes})


def render_rules(template: str, data: SimpleNamespace) -> str:
    rules = firewall_rules(data, PROJECT_DIR / template)
    return get_template(str(PROJECT_DIR / template)).render(rules=rules, anchor="com.apple/org.saf.ray")


def test_a_scope_id_cannot_add_a_rule_line():
    hostile = render_rules(NFT_TEMPLATE, rules_data("10.0.0.1", SCOPED))
    benign = render_rules(NFT_TEMPLATE, rules_data("10.0.0.1", "fe80::1"))
    assert hostile.splitlines() == benign.splitlines() and "evil" not in hostile
    pf = render_rules(PF_TEMPLATE, rules_data("10.0.0.1", SCOPED))
    assert "evil" not in pf and "{ 10.0.0.1 fe80::1 }" in pf


@pytest.mark.parametrize("ip", ["10.0.0.2 }\nchain evil {}", "10.0.0.2, 0.0.0.0/0", "any", "::/0"])
def test_a_node_ip_that_is_not_an_address_is_refused_naming_the_fix(ip):
    with pytest.raises(FirewallAddressError, match=r"not an IPv4 or IPv6 address\. Fix the node's `ip`"):
        firewall_rules(rules_data("10.0.0.1", ip), PROJECT_DIR / NFT_TEMPLATE)


@pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0, reason="`nft -c` needs nftables and root")
def test_nft_accepts_the_rules_rendered_from_a_hostile_scope_id(tmp_path):
    path = tmp_path / "firewall.nft"
    path.write_text(render_rules(NFT_TEMPLATE, rules_data("10.0.0.1", SCOPED)))
    checked = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


# --- ssh argv -----------------------------------------------------------------------------------------

PROXY = "-oProxyCommand=touch /tmp/saf-owned"


def hostile_node(**fields) -> NodeSpec:
    return NodeSpec.model_construct(**{"name": "alpha", "role": "head", "address": "10.0.0.1", "ip": None,
                                       "ssh_user": None, "ssh_port": None, "ssh_key": None,
                                       "ssh_known_hosts_file": None, **fields})


def test_a_hostile_user_or_address_is_never_an_ssh_option():
    argv = ssh_argv(hostile_node(ssh_user=PROXY, address=PROXY), "uname")
    assert argv[argv.index("-l") + 1] == PROXY
    assert argv[argv.index("--") + 1:] == [PROXY, "uname"]
    assert all(not a.startswith("-oProxy") for a in argv[:argv.index("-l")])


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
@pytest.mark.parametrize("field", ["ssh_user", "address"])
def test_ssh_itself_never_reads_a_hostile_user_or_address_as_a_proxy_command(field):
    """``ssh -G`` prints the configuration it would use, without connecting: the hostile value is
    refused as a user or host name ("contains invalid characters"), never taken as an option."""
    argv = ssh_argv(hostile_node(**{field: PROXY}))
    shown = subprocess.run([argv[0], "-G", "-F", "/dev/null", *argv[1:]], capture_output=True, text=True, timeout=30)
    assert "proxycommand" not in shown.stdout.lower()
    assert shown.returncode != 0 and "contains invalid characters" in shown.stderr


def test_scp_takes_the_user_as_an_option_value_and_the_sources_after_the_end_of_options():
    argv = scp_argv(hostile_node(ssh_user=PROXY, address="fe80::1"), ["-oProxyCommand=x"], "/tmp/d")
    assert argv[argv.index("--") + 1:] == ["-oProxyCommand=x", "[fe80::1]:/tmp/d"]
    assert f"User={PROXY}" in argv and argv[argv.index(f"User={PROXY}") - 1] == "-o"


# --- the deploy itself, with values that got past the cluster file ------------------------------------


@pytest.fixture
def past_the_spec(monkeypatch):
    """plan() over a cluster whose head node is changed after validation (``model_copy`` does not
    validate): as if a hostile value had got past the cluster file's checks."""
    import dataclasses

    import tests.planning as planning

    def install(**node_fields):
        real = planning.load_cluster

        def load(project_dir, path=None):
            cluster = real(project_dir, path)
            nodes = tuple(node.model_copy(update=node_fields) if node.role == "head" else node
                          for node in cluster.nodes)
            return dataclasses.replace(cluster, nodes=nodes)

        monkeypatch.setattr(planning, "load_cluster", load)

    return install


def test_a_hostile_ssh_user_is_one_shell_word_for_loginctl_and_a_bare_value_in_the_user_unit(plan, past_the_spec):
    from tests.facts import fresh_debian

    user = "saf; touch /tmp/owned #"
    past_the_spec(ssh_user=user)
    quoted = "'saf; touch /tmp/owned #'"
    facts = fresh_debian(**{f"server.Command:loginctl show-user {quoted} -p Linger --value 2>/dev/null || true": "",
                            "server.Command:*": ""})
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"}],
               "settings": {"use_sudo": False}}
    alpha = plan({"alpha": facts}, cluster=cluster, deploy_file="tasks/ray_service.py")["alpha"]
    assert alpha.op("linger").commands == [f"loginctl enable-linger {quoted}"]
    unit = alpha.op("Ray head unit").uploads["/home/saf/.config/systemd/user/saf-ray-head.service"].decode()
    assert dict(unit_lines(unit))["User"] == user  # one value: systemd refuses the name, nothing runs
    assert [key for key, _ in unit_lines(unit)].count("ExecStart") == 1


def test_a_hostile_venv_root_past_the_spec_stays_inside_the_unit_s_words(plan, monkeypatch):
    import dataclasses

    import tests.planning as planning
    from tests.facts import fresh_debian

    real = planning.load_cluster
    hostile = "~/saf/venv\nExecStartPre=+/bin/sh -c id"

    def load(project_dir, path=None):
        cluster = real(project_dir, path)
        return dataclasses.replace(cluster, settings=cluster.settings.model_copy(update={"venv_root": hostile}))

    monkeypatch.setattr(planning, "load_cluster", load)
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"}]}
    alpha = plan({"alpha": fresh_debian(**{"server.Command:*": ""})}, cluster=cluster,
                 deploy_file="tasks/ray_service.py")["alpha"]
    unit = alpha.op("Ray head unit").uploads["/etc/systemd/system/saf-ray-head.service"].decode()
    keys = [key for key, _ in unit_lines(unit)]
    assert "ExecStartPre" not in keys and keys.count("ExecStart") == 1
    assert systemd_words(dict(unit_lines(unit))["ExecStart"])[0] == (
        "/home/saf/saf/venv\nExecStartPre=+/bin/sh -c id/current/bin/ray")


def test_a_home_with_a_newline_stops_the_run_before_any_host_with_the_fix(plan):
    from tests.facts import fresh_debian

    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1", "ssh_user": "saf"}]}
    facts = fresh_debian(**{"server.Home": "/home/saf\nExecStartPre=+/bin/sh -c id", "server.Command:*": ""})
    with pytest.raises(UnsafeValueError, match="into a systemd unit's WorkingDirectory=: it holds a newline"):
        plan({"alpha": facts}, cluster=cluster, deploy_file="tasks/ray_service.py")
