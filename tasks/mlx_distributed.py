"""MLX distributed: every node's ``~/.saf/mlx/hostfile.json``, the hostfile of ``mlx.launch``
(ring format, the cluster ips), for users who launch with ``mlx.launch --hostfile`` themselves.
``saf launch`` and the verification's collective need no file: Ray places their ranks."""

from io import StringIO

from pyinfra import host
from pyinfra.facts.files import Directory
from pyinfra.facts.server import Home
from pyinfra.operations import files

from saf.mlx_ring import HOSTFILE
from saf.paths import on_node

hostfile = on_node(HOSTFILE, host.get_fact(Home))
if not host.get_fact(Directory, path=hostfile.rsplit("/", 1)[0]):
    files.directory(name="MLX hostfile directory", path=hostfile.rsplit("/", 1)[0], present=True)
files.put(
    name="MLX hostfile for mlx.launch (ring, cluster ips)",
    src=StringIO(host.data.mlx_hostfile),
    dest=hostfile,
    mode="644",
)
