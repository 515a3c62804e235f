"""The lab: several simulated SAF nodes on one Linux machine, provisioned over SSH like real ones.

Each node is a systemd-nspawn container booting real systemd, in its own network namespace on
the lab bridge, with its own root filesystem (a copy of a debootstrap'd Debian), hostname, /tmp,
sshd and Unix user. Everything the lab makes lives under ``.saf/lab/`` or is named ``saf-*``;
``saf lab down`` removes all of it.
"""
