"""Per-OS constants: where Homebrew lives, and the build dependencies pyenv documents."""

from __future__ import annotations

HOMEBREW_PREFIX = "/opt/homebrew"  # Apple Silicon; a non-login SSH shell has no brew on PATH
BREW_PATH = f"{HOMEBREW_PREFIX}/bin"
BREW = f"{BREW_PATH}/brew"
BREW_ENV = {"PATH": f"{BREW_PATH}:{HOMEBREW_PREFIX}/sbin:/usr/bin:/bin:/usr/sbin:/sbin"}
HOMEBREW_INSTALL = (
    'NONINTERACTIVE=1 /bin/bash -c "$(curl -fsSL https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh)"'
)

# pyenv's documented build environment for each system (Homebrew's canonical formula names:
# `brew list` says sqlite, not its alias sqlite3, and a run must recognise what it installed)
MAC_BUILD_DEPS = ("pyenv", "openssl@3", "readline", "sqlite", "xz", "zlib", "tcl-tk")
DEBIAN_BUILD_DEPS = (
    "git",
    "build-essential",
    "libssl-dev",
    "zlib1g-dev",
    "libbz2-dev",
    "libreadline-dev",
    "libsqlite3-dev",
    "libncurses-dev",
    "libffi-dev",
    "liblzma-dev",
    "uuid-dev",
    "xz-utils",
)
