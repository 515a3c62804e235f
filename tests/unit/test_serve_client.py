"""`saf ask` and `saf serve-tunnel` on the control machine: the tunnel's ssh command line, the API key
read from its file (never an argument), and a cluster file that serves nothing refused with the fix."""

from __future__ import annotations

from click.testing import CliRunner

from saf.cli import main
from saf.serve.client import api_key, tunnel_argv
from saf.spec import load_cluster
from tests.conftest import PROJECT_DIR
from tests.unit.test_spec_serve import cluster


def test_the_tunnel_forwards_a_local_port_to_the_heads_loopback_endpoint(write_cluster, tmp_path):
    loaded = load_cluster(PROJECT_DIR, write_cluster(cluster(tmp_path, {"model": "models/tiny", "mode": "replicas"})))
    assert tunnel_argv(loaded, 18000) == ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-L",
                                          "127.0.0.1:18000:127.0.0.1:8000", "-o", "BatchMode=yes", "--", "10.0.0.1"]
    assert api_key(loaded, tmp_path) is None


def test_on_the_cluster_address_the_tunnel_goes_there_and_the_key_comes_from_its_file(write_cluster, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("0123abcd\n")
    loaded = load_cluster(PROJECT_DIR, write_cluster(cluster(
        tmp_path, {"model": "models/tiny", "mode": "replicas"},
        {"serve_bind": "cluster", "serve_port": 8100, "serve_api_key_file": str(key_file)})))
    argv = tunnel_argv(loaded, 18000)
    assert "127.0.0.1:18000:10.0.0.1:8100" in argv and "0123abcd" not in " ".join(argv)
    assert api_key(loaded, tmp_path) == "0123abcd"


def test_ask_without_a_serve_part_says_how_to_serve(write_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SAF_CLUSTER", str(write_cluster(cluster(tmp_path, None))))
    monkeypatch.chdir(PROJECT_DIR)
    for command in (["ask", "hello"], ["serve-tunnel"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and "serves no model: add a `serve:` part" in result.output
        assert "Traceback" not in result.output
