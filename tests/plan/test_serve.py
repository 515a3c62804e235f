"""Serving a model, planned on Macs (and a Debian box): the model staged with rsync into its digest's
folder and switched to when complete, the head's serving LaunchDaemon (plist parsed with plistlib,
its environment), the serving nodes' Ray offering the saf_serve resource, a converged Mac with
nothing to do, and everything taken away when the cluster file stops serving."""

from __future__ import annotations

import hashlib
import json
import plistlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api.util import get_template

from saf.operations.plist import STAGED_SUFFIX
from saf.serve.model_dir import model_digest
from saf.serve.service import model_dir_name, serve_config, serve_environment, ServeService, config_text
from saf.service import ray_service
from saf.spec import load_defaults
from saf.venv_spec import current_venv_path, requirements, venv_name
from tests.conftest import PROJECT_DIR
from tests.facts import converged_mac, fresh_debian, fresh_mac, installed, mac_network, ray_service_run
from tests.planning import FromHostData
from tests.unit.test_spec_serve import model_dir

HOME = "/Users/arthurdell"
MODELS = f"{HOME}/.saf/models"
SERVE_PLIST = "/Library/LaunchDaemons/org.saf.serve.plist"
RAY_HEAD_PLIST = "/Library/LaunchDaemons/org.saf.ray-head.plist"
NODES = [{"name": "alpha", "role": "head", "address": "192.168.1.172", "ssh_user": "arthurdell"},
         {"name": "beta", "role": "worker", "address": "192.168.1.42", "ssh_user": "arthurdell"}]


@pytest.fixture
def model(tmp_path) -> Path:
    return model_dir(tmp_path)  # tmp_path is where write_cluster puts the cluster file


def serving(serve: dict | None = None, **settings) -> dict:
    cluster = {"nodes": NODES, "settings": settings}
    cluster["serve"] = {"model": "models/tiny", "mode": "replicas", **(serve or {})}
    return cluster


def beta_mac(**overrides):
    return fresh_mac(**{**mac_network(ip="192.168.1.42"), **overrides})


def serving_venv() -> tuple[str, tuple[str, ...]]:
    defaults = load_defaults(PROJECT_DIR)
    reqs = requirements(defaults["ray_version"], defaults["mlx_version"], "", list(defaults["extra_packages"]),
                        list(defaults["serve_packages"]))
    return venv_name(defaults["python_version"], reqs), reqs


def serve_ops(host_plan):
    return [op for op in host_plan.ops if op.name.startswith("tasks/serve.py")]


def test_fresh_macs_get_the_model_staged_and_switched_to_only_when_complete(plan, model):
    plans = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=serving())
    name = model_dir_name(model_digest(model))
    incoming = f"{MODELS}/.incoming-{name}"
    for node in ("alpha", "beta"):
        copy = plans[node].op("Copy the model tiny")
        assert copy.commands == [f"RsyncCommand({model}/, {incoming}/, "
                                 "['-a', '--checksum', '--partial', '--delete', '--exclude=.*'])"]
        done = plans[node].op("Mark the model")
        assert done.commands == [f"printf %s {model_digest(model)} > {incoming}/.saf-digest && rm -rf "
                                 f"{MODELS}/{name} && mv {incoming} {MODELS}/{name}"]
        assert plans[node].op("Models: current").commands == [f"ln -sfn {name} {MODELS}/current"]
        ops = [op.name for op in serve_ops(plans[node])]
        assert ops.index(copy.name) < ops.index(done.name) < ops.index(plans[node].op("Models: current").name)


def test_the_head_runs_the_serving_program_as_a_launchdaemon(plan, model):
    alpha = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=serving())["alpha"]
    definition = alpha.op("Serving job definition")
    assert definition.sudo
    job = plistlib.loads(definition.uploads[SERVE_PLIST + STAGED_SUFFIX])
    python = f"{HOME}/saf/venv/current/bin/python"
    assert job["Label"] == "org.saf.serve" and job["UserName"] == "arthurdell"
    assert job["ProgramArguments"] == [python, f"{HOME}/.saf/serve/serve_app.py", "--config",
                                       f"{HOME}/.saf/serve/config.json"]
    environment = job["EnvironmentVariables"]
    assert environment["PATH"].startswith(f"{HOME}/saf/venv/current/bin:") and environment["HOME"] == HOME
    assert environment["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
    assert "SAF_SERVE_API_KEY_FILE" not in environment  # loopback: no key
    assert job["RunAtLoad"] is True and job["KeepAlive"] is True
    assert job["StandardOutPath"] == f"{HOME}/Library/Logs/saf/serve.log"
    assert definition.commands[-1] == f"mv {SERVE_PLIST}{STAGED_SUFFIX} {SERVE_PLIST}"
    assert "chown root:wheel" in " ".join(definition.commands)
    load = alpha.op("Serving program (launchd)")
    assert load.commands[-1] == f"launchctl bootstrap system {SERVE_PLIST}" and load.sudo


def test_the_serving_config_names_the_staged_model_the_loopback_endpoint_and_every_replica(plan, model):
    alpha = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=serving())["alpha"]
    config = json.loads(alpha.op("Serving config").uploads[f"{HOME}/.saf/serve/config.json"])
    assert config == {"address": "192.168.1.172:6380", "model_path": f"{MODELS}/{model_dir_name(model_digest(model))}",
                      "model_id": "tiny", "host": "127.0.0.1", "port": 8000, "replicas": 2, "resource": "saf_serve",
                      "app_name": "saf-serve"}
    program = alpha.op("Serving program (serve_app.py)").uploads[f"{HOME}/.saf/serve/serve_app.py"]
    assert program == (PROJECT_DIR / "saf/node_scripts/serve_app.py").read_bytes()


def test_only_the_serving_nodes_offer_the_serve_resource_and_hold_the_model(plan, model):
    plans = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=serving({"nodes": ["beta"]}))
    head = plistlib.loads(plans["alpha"].op("LaunchDaemon").uploads[RAY_HEAD_PLIST + STAGED_SUFFIX])
    worker = plistlib.loads(plans["beta"].op("LaunchDaemon").uploads[
        "/Library/LaunchDaemons/org.saf.ray-worker.plist" + STAGED_SUFFIX])
    assert '--resources={"saf_serve": 1}' in worker["ProgramArguments"]
    assert not any(argument.startswith("--resources") for argument in head["ProgramArguments"])
    assert not plans["alpha"].has_command("rsync") and not any("Copy the model" in op.name for op in plans["alpha"].ops)
    config = json.loads(plans["alpha"].op("Serving config").uploads[f"{HOME}/.saf/serve/config.json"])
    assert config["replicas"] == 1


def test_the_serving_venv_carries_the_serve_pins(plan, model):
    alpha = plan({"alpha": fresh_mac(), "beta": beta_mac()}, cluster=serving())["alpha"]
    name, reqs = serving_venv()
    assert any(name in op.name for op in alpha.ops)
    assert "ray[default,serve]==2.49.1" in reqs and "pip==26.0.1" in reqs


def test_the_endpoint_on_the_cluster_address_gets_a_key_file_never_in_argv(plan, model, tmp_path):
    key_file = tmp_path / "secrets" / "serve-api-key"
    alpha = plan({"alpha": fresh_mac(), "beta": beta_mac()},
                 cluster=serving(serve_bind="cluster", firewall=True, serve_api_key_file=str(key_file)))["alpha"]
    job = plistlib.loads(alpha.op("Serving job definition").uploads[SERVE_PLIST + STAGED_SUFFIX])
    key = key_file.read_text().strip()
    assert job["EnvironmentVariables"]["SAF_SERVE_API_KEY_FILE"] == f"{HOME}/.saf/serve/api-key"
    assert key not in SERVE_PLIST and key not in " ".join(job["ProgramArguments"])
    assert oct(key_file.stat().st_mode)[-3:] == "600"
    pushed = alpha.op("Serving API key (0600)")
    assert pushed.uploads[f"{HOME}/.saf/serve/api-key"].decode().strip() == key
    assert not any(key in command for op in alpha.ops for command in op.commands)
    config = json.loads(alpha.op("Serving config").uploads[f"{HOME}/.saf/serve/config.json"])
    assert config["host"] == "192.168.1.172"


def _serve_service(data) -> ServeService:
    venv_current = current_venv_path(data.venv_root, HOME)
    return ServeService("arthurdell", HOME, venv_current, serve_environment(data, HOME, venv_current))


def _rendered(template: str, **context) -> bytes:
    """The template rendered as the deploy renders it (pyinfra's own template loader)."""
    return get_template(str(PROJECT_DIR / template)).render(**context).encode()


def converged_serving_mac(model: Path, role: str, ip: str) -> dict:
    """A Mac on which a run already staged the model, and (the head) runs the serving program."""
    name, reqs = serving_venv()
    staged = model_dir_name(model_digest(model))
    ray_plist = f"/Library/LaunchDaemons/org.saf.ray-{role}.plist"

    def ray_plist_sha(data) -> str:
        service = ray_service(SimpleNamespace(data=data), "arthurdell", HOME, current_venv_path(data.venv_root, HOME))
        return hashlib.sha1(_rendered("templates/ray.plist.j2", service=service, daemon=True,
                                      logs=service.logs)).hexdigest()

    facts = converged_mac(role=role, ip=ip, **{
        "python.SafVenvs:*": {"venvs": {name: True}, "current": name, "previous": None},
        f"python.VenvDistributions:{HOME}/saf/venv/{name}": {**installed(reqs), "pip": "26.0.1"},
        f"files.Sha1File:{ray_plist}": FromHostData(ray_plist_sha),
        "service.RayServiceRun:*": ray_service_run("launchd", f"{HOME}/saf/venv", name, watched=(ray_plist,)),
        "serve.StagedModels:*": {"current": staged, "dirs": {staged: model_digest(model)}},
    })
    if role == "head":
        program, config = f"{HOME}/.saf/serve/serve_app.py", f"{HOME}/.saf/serve/config.json"
        facts.update({
            f"files.Directory:{HOME}/.saf/serve": {"mode": 700, "user": "arthurdell"},
            f"files.File:{program}": {"mode": 644, "user": "arthurdell"},
            f"files.Sha1File:{program}": hashlib.sha1(
                (PROJECT_DIR / "saf/node_scripts/serve_app.py").read_bytes()).hexdigest(),
            f"files.File:{config}": {"mode": 644, "user": "arthurdell"},
            f"files.Sha1File:{config}": FromHostData(
                lambda data: hashlib.sha1(config_text(serve_config(data, HOME)).encode()).hexdigest()),
            f"files.File:{SERVE_PLIST}": {"mode": 644, "user": "root", "group": "wheel"},
            f"files.Sha1File:{SERVE_PLIST}": FromHostData(lambda data: hashlib.sha1(_rendered(
                "templates/serve.plist.j2", service=_serve_service(data), daemon=True)).hexdigest()),
            "launchd.LaunchdJob:system/org.saf.serve": {"state": "running", "pid": 5120, "path": SERVE_PLIST},
        })
    return facts


def test_a_converged_serving_mac_gets_no_command_at_all(plan, model):
    plans = plan({"alpha": converged_serving_mac(model, "head", "192.168.1.172"),
                  "beta": converged_serving_mac(model, "worker", "192.168.1.42")}, cluster=serving())
    for node, host_plan in plans.items():
        changing = [(op.name, op.commands) for op in host_plan.changing_ops]
        assert not changing, f"{node}: {changing}"


def test_a_new_model_is_staged_beside_the_old_one_which_stays_as_previous_and_older_ones_go(plan, model):
    old, older = "0123456789abcdef", "fedcba9876543210"
    facts = converged_serving_mac(model, "head", "192.168.1.172")
    facts["serve.StagedModels:*"] = {"current": old, "dirs": {old: "0" * 64, older: "1" * 64}}
    alpha = plan({"alpha": facts, "beta": converged_serving_mac(model, "worker", "192.168.1.42")},
                 cluster=serving())["alpha"]
    name = model_dir_name(model_digest(model))
    assert alpha.op("Copy the model tiny").commands
    assert alpha.op("Models: current").commands == [f"ln -sfn {name} {MODELS}/current"]
    assert alpha.op("Prune older models").commands == [f"rm -rf {MODELS}/{older}"]


def test_a_cluster_file_that_stops_serving_takes_the_service_and_models_away(plan, model):
    facts = {"alpha": converged_serving_mac(model, "head", "192.168.1.172"),
             "beta": converged_serving_mac(model, "worker", "192.168.1.42")}
    plans = plan(facts, cluster={"nodes": NODES})
    staged = model_dir_name(model_digest(model))
    alpha = plans["alpha"]
    assert alpha.op("Stop the serving program (launchd)").commands == ["launchctl bootout system/org.saf.serve"]
    assert alpha.op("Remove the serving service definition").commands == [f"rm -f {SERVE_PLIST}"]
    assert alpha.op("Remove the serving folder").commands == [f"rm -rf {HOME}/.saf/serve"]
    for node in ("alpha", "beta"):
        assert plans[node].op("Remove the served models").commands == [
            f"rm -rf {MODELS}/{staged} && rm -f {MODELS}/current && {{ rmdir {MODELS} || true; }}"]


def test_a_debian_head_gets_a_systemd_unit_after_ray(plan, model):
    cluster = {"nodes": [{"name": "alpha", "role": "head", "address": "10.0.0.1"}],
               "serve": {"model": "models/tiny", "mode": "replicas"}}
    alpha = plan({"alpha": fresh_debian()}, cluster=cluster)["alpha"]
    unit = alpha.op("Serving unit").uploads["/etc/systemd/system/saf-serve.service"].decode()
    assert "After=network-online.target saf-ray-head.service" in unit
    assert ("ExecStart=/home/saf/saf/venv/current/bin/python /home/saf/.saf/serve/serve_app.py --config "
            "/home/saf/.saf/serve/config.json") in unit
    assert "Restart=always" in unit and "User=saf" in unit


def test_a_changed_port_restarts_the_serving_program_and_nothing_else_of_it(plan, model):
    head = converged_serving_mac(model, "head", "192.168.1.172")
    head[f"files.Sha1File:{HOME}/.saf/serve/config.json"] = "0" * 40  # the node holds the config of another port
    facts = {"alpha": head, "beta": converged_serving_mac(model, "worker", "192.168.1.42")}
    alpha = plan(facts, cluster=serving(serve_port=8100))["alpha"]
    config = json.loads(alpha.op("Serving config").uploads[f"{HOME}/.saf/serve/config.json"])
    assert config["port"] == 8100
    assert alpha.op("Serving program (launchd)").commands == ["launchctl kickstart -k system/org.saf.serve"]
    assert not alpha.op("Serving job definition").commands  # its definition is the same


def test_teardown_stops_the_serving_program_before_ray_and_removes_the_models(plan, model):
    facts = {"alpha": converged_serving_mac(model, "head", "192.168.1.172"),
             "beta": converged_serving_mac(model, "worker", "192.168.1.42")}
    plans = plan(facts, cluster=serving(), deploy_file="tasks/teardown.py")
    alpha = plans["alpha"]
    names = [op.name for op in alpha.ops]
    stop_serving = alpha.op("Stop the serving program (launchd)")
    assert stop_serving.commands == ["launchctl bootout system/org.saf.serve"]
    assert names.index(stop_serving.name) < names.index(alpha.op("Stop Ray head").name)
    staged = model_dir_name(model_digest(model))
    for node in ("alpha", "beta"):
        assert plans[node].op("Remove the served models").commands == [
            f"rm -rf {MODELS}/{staged} && rm -f {MODELS}/current && {{ rmdir {MODELS} || true; }}"]
