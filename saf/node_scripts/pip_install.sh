# Install a venv's pinned requirements with its own pip, and on failure say which package failed.
#
# Run on the node as:  sh -c "$(cat pip_install.sh)" pip_install.sh NODE CONSEQUENCE VENV REQUIREMENTS [PIP_OPTION...]
#   NODE         the node's name, for the message
#   CONSEQUENCE  what a failure means for the node, e.g. "the node stays on its current venv (...)"
#   VENV         the venv to install into (its bin/python runs pip)
#   REQUIREMENTS a requirements file of exact pins
#   PIP_OPTION   more options for pip, e.g. those that install offline from the pushed wheelhouse
#
# pip's own output goes to VENV.pip.log and is removed afterwards; on failure it is printed to
# stderr first, then "SAF: pip could not install PACKAGE on NODE; CONSEQUENCE", and the exit
# status is 1. Removing what the failed run made is the caller's part (it knows what it made).

node=$1 consequence=$2 venv=$3 requirements=$4
shift 4
log="$venv.pip.log"

# the package pip names when it finds no distribution for a pin, or cannot build one
failed_package() {
    sed -n 's/.*matching distribution found for \([^ ]*\).*/\1/p; s/.*Failed to build \([^ ]*\).*/\1/p' "$log" | head -n 1
}

# A pip pinned among the requirements is installed first, alone: an old pip (Python 3.9's ensurepip
# brings 23.0.1) backtracks for many minutes over Ray Serve's dependencies that a new one resolves at once.
pip_pin=$(grep -E '^pip==' "$requirements" | head -n 1)

# PIP_CONFIG_FILE=/dev/null: no pip.conf of the node's user changes what gets installed
if ! { [ -z "$pip_pin" ] || PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install --disable-pip-version-check \
        -q "$@" "$pip_pin"; } >"$log" 2>&1 \
    || ! PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" \
        -r "$requirements" >>"$log" 2>&1; then
    cat "$log" >&2
    package=$(failed_package)
    rm -f "$log"
    echo "SAF: pip could not install ${package:-the pinned packages} on $node; $consequence" >&2
    exit 1
fi
rm -f "$log"
