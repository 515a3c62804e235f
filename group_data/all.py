"""Every Studio Air Fabric setting, with its default: the one place settings live.

Override any of them for one cluster under ``settings:`` in its cluster file (cluster.yaml);
``saf.spec`` validates the merged result before any host is contacted, and refuses a key that
is not defined here (a typo must not be ignored silently).
"""

# --- Pins: exact x.y.z versions, identical on every node -------------------------------------
# python_version must be one the Ray and MLX pins have wheels for: checked offline against the table
# in saf/spec/pins.py (from PyPI's wheels); Python 3.8 and older are refused.
python_version = "3.9.23"  # CPython built by pyenv on every node (Ray refuses a patch mismatch)
ray_version = "2.49.1"  # installed as ray[default]==ray_version
mlx_version = "0.29.1"  # installed as mlx==mlx_version (mlx[cpu] on Linux)
extra_packages = ["numpy==2.0.2"]  # more exact pins for the venv (the verification needs NumPy), e.g. mlx-lm==0.28.0

# --- Where things live on a node (paths under ~ are the SSH user's home) ----------------------
# Every path setting (here and below) holds only ASCII letters, digits, '.', '_', '-' and '/', with
# an optional leading ~/, and no '..': it is written into units, plists and shell commands. A folder
# of SAF's own: never /, a system folder (/etc, /usr, /opt, /tmp, ...), a home directory, ~/.ssh,
# ~/Documents and the like, or a parent of one (SAF prunes and tears down what is inside).
venv_root = "~/saf/venv"  # venvs named by their pins live here; `current` links the active one
pyenv_root = "~/.pyenv"  # pyenv's root (PYENV_ROOT) on every node
pyenv_git_url = "https://github.com/pyenv/pyenv.git"  # Linux: pyenv's clone URL: https://, or a path / file:// on the nodes (http://, git:// only with trusted_network)

# --- Offline inputs, pushed from the control machine -----------------------------------------
# Control-side paths are relative to the project directory; never the project itself or a parent of it.
python_source_cache = ""  # control-side dir holding Python-X.Y.Z.tar.gz; "" = nodes download it
wheelhouse = ".saf/wheelhouse"  # control-side wheel cache filled once and pushed; "" = nodes use the index

# --- Ray ------------------------------------------------------------------------------------------
ray_port = 6380  # GCS port on the head (6379 is Redis's)
dashboard_port = 8265  # Ray dashboard and job API on the head
dashboard_bind = "loopback"  # loopback (reach it with `saf dashboard`) | cluster (head's cluster ip; needs token auth or the firewall)
macos_service = "daemon"  # daemon: LaunchDaemon, starts at boot with nobody logged in | agent: LaunchAgent
ray_auth = "auto"  # auto: token auth whenever the pinned Ray has it (>= 2.52) | token | off (see README)
ray_auth_token_file = ".saf/secrets/ray-auth-token"  # control-side token file: yours, 0600, 64 hex characters (generated once; pushed to nodes)
foreign_ray = "stop"  # Ray not started by SAF on a node: stop it and set its launchers aside | refuse: stop the node

# --- Ray's other ports: every port `ray start` listens on is pinned (Ray picks most at random) ----
# Named like their `ray start` options; all distinct, outside the worker range, and below the OS's
# ephemeral ports (Linux 32768+, macOS 49152+) so no outgoing connection can take one first.
# (The head's metrics servers use Ray's fixed 44217 and 44227; the firewall covers those too.)
node_manager_port = 6381  # every node: the raylet (scheduling, leases)
object_manager_port = 6382  # every node: object transfers between nodes
runtime_env_agent_port = 6383  # every node: the runtime env agent
dashboard_agent_grpc_port = 6384  # every node: the dashboard/metrics agent (gRPC)
dashboard_agent_listen_port = 6385  # every node: the dashboard agent (HTTP; Ray's 52365 is ephemeral)
metrics_export_port = 6386  # every node: Prometheus metrics
ray_client_server_port = 10001  # the head: Ray Client (ray://), Ray's default
min_worker_port = 10002  # every node: worker processes bind in min_worker_port..max_worker_port
max_worker_port = 19999  # (Ray's default range: one port per worker process)

# --- Network --------------------------------------------------------------------------------------
mtu = 9000  # MTU of the interface that carries each node's cluster ip (jumbo frames)
manage_mtu = True  # set the MTU; False leaves interfaces alone

# --- Firewall -------------------------------------------------------------------------------------
firewall = False  # host rules (nftables / pf) admitting Ray's ports only from the cluster's nodes and loopback
# A Ray without token auth (ray_version < 2.52.0, or ray_auth: off) runs any job anyone on the network
# sends it (ShadowRay, CVE-2023-48022): such a cluster must set firewall: true, or say with
# trusted_network: true that the network is the user's alone. Not on by default because a
# `--limit` run onboarding a new node leaves the other nodes' rules as they were (see README).
trusted_network = False  # true: no one else is on the network between the nodes (a lab, a private cable)

# --- macOS power settings ---------------------------------------------------------------------------
macos_power_settings = True  # pmset: never sleep (sleep 0, disksleep 0), autorestart 1, womp 1

# --- MLX distributed (the collective the verification proves, `saf launch`, ~/.saf/mlx/hostfile.json) ---
mlx_backend = "ring"  # ring: MLX's TCP ring over the cluster ips (RDMA over Thunderbolt, jaccl, is not offered yet)
mlx_ring_port = 6390  # rank r listens on mlx_ring_port + r (one rank per node, in cluster-file order)

# --- Verification ---------------------------------------------------------------------------------
verify_after_deploy = True  # every deploy ends with the verification; false skips it (to time the converge alone)
verify_timeout_s = 120  # seconds a node has to run its MLX job before it fails the check by name
verify_slow_ratio = 0.5  # a node below this share of its same-hardware peers' median GFLOPS is flagged

# --- Preflight ------------------------------------------------------------------------------------
min_free_disk_gb = 10  # free space needed in the SSH user's home (Python build + two venvs)
min_macos_version = "13.5"  # oldest macOS the pinned MLX supports
use_sudo = True  # the deploy may use sudo (system services, MTU, build dependencies)

# --- Serving a model (only when the cluster file has a `serve:` part; see README "Serving a model") ----
serve_port = 8000  # the endpoint's port on the head (OpenAI-compatible, /v1); clash-checked against Ray's and the ring's
serve_bind = "loopback"  # loopback (reach it with `saf serve-tunnel` / `saf ask`) | cluster (head's cluster ip; needs firewall: true, asks for the API key)
serve_api_key_file = ".saf/secrets/serve-api-key"  # control-side key file (generated once, 0600; pushed to the head; used with serve_bind: cluster)
# Added to every node's venv when serving (part of the venv's name, like extra_packages); ray becomes
# ray[default,serve]. pip first: the pip of Python 3.9's ensurepip spends >12 min resolving Ray Serve.
# fastapi and protobuf pinned: newer ones break Ray Serve 2.49 (an unpicklable app; the controller's
# descriptors). mlx-lm 0.28.0 is the newest that installs with MLX 0.29.1 on a Mac; transformers < 5.
serve_packages = ["pip==26.0.1", "mlx-lm==0.28.0", "fastapi==0.116.1", "protobuf==6.33.6", "transformers==4.57.6"]
