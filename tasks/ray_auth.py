"""Ray token authentication: the cluster's one token, from the control machine, on every node.

With ``ray_auth`` auto (and a Ray that has token auth) or token, the control-side token file is
generated once and pushed as a 0600 file in a 0700 directory of the SSH user, who runs Ray; the
services find it through ``RAY_AUTH_TOKEN_PATH``. A new token (``saf rotate-token``) restarts Ray,
head first. Without token auth the node keeps no token.
"""

from pyinfra import host, state
from pyinfra.facts.files import File
from pyinfra.facts.server import Home
from pyinfra.operations import files

from saf.auth import NODE_TOKEN_FILE, auth_mode, ensure_control_token
from saf.paths import on_control, on_node
from saf.restarts import RestartReason, restart_ray_because

token_path = on_node(NODE_TOKEN_FILE, host.get_fact(Home))

if auth_mode(host.data.ray_auth, host.data.ray_version) == "token":
    token = ensure_control_token(on_control(host.data.ray_auth_token_file, state.cwd))
    files.directory(name="Ray auth token directory (0700)", path=token_path.rsplit("/", 1)[0], mode="700", present=True)
    pushed = files.put(name="Ray auth token (0600)", src=str(token), dest=token_path, mode="600")
    if pushed.will_change:
        restart_ray_because(host, RestartReason.AUTH_TOKEN_CHANGED)
elif host.get_fact(File, path=token_path):  # only where there is one to remove
    files.file(name="No Ray auth token on the node", path=token_path, present=False)
