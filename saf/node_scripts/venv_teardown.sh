# Remove SAF's venvs from a venv root, and the root itself only if nothing else is left in it.
#
# Run on the node as:  sh -c "$(cat venv_teardown.sh)" venv_teardown.sh ROOT VENV_NAME_RE MARKER SIDE_FILES
#   ROOT          the venv root (absolute)
#   VENV_NAME_RE  the exact form of SAF's venv names (saf.venv_spec.VENV_NAME_PATTERN, POSIX ERE)
#   MARKER        the file that marks the root as SAF's (saf.venv_spec.ROOT_MARKER)
#   SIDE_FILES    suffixes of the files SAF leaves beside a venv while building it (".requirements.txt ...")
#
# Removed: directories (never links) named exactly as SAF names venvs, the files beside them, and
# the links current and previous (and their .tmp left by an interrupted switch). Anything else (a
# folder or file of the user's, a look-alike name, a link named like a venv) stays, and then so do
# the root and its marker. No link is followed: `rm -rf` of a venv removes links inside it, never
# what they point to. Running it again changes nothing; a root that is not there is left alone.

root=$1 venv_re=$2 marker=$3 side=$4

[ -d "$root" ] || exit 0
cd "$root" || exit 1

is_venv_name() {
    case $1 in *[!A-Za-z0-9._-]*) return 1 ;; esac  # (no newline: grep -x then sees the whole name)
    printf '%s\n' "$1" | grep -Eqx "$venv_re"
}

for link in current previous .current.tmp .previous.tmp; do
    if [ -L "$link" ]; then rm -f -- "$link" || exit 1; fi
done
for entry in py*; do
    is_venv_name "$entry" || continue
    if [ -d "$entry" ] && [ ! -L "$entry" ]; then rm -rf -- "$entry" || exit 1; fi
done
for suffix in $side; do
    for file in py*"$suffix"; do
        [ -f "$file" ] && [ ! -L "$file" ] && is_venv_name "${file%"$suffix"}" && { rm -f -- "$file" || exit 1; }
    done
done

left=$(ls -A)
if [ -z "$left" ] || [ "$left" = "$marker" ]; then
    rm -f -- "$marker" && cd / && { [ -L "$root" ] || rmdir -- "$root"; }  # a link to the root stays
else
    echo "SAF: kept $root: it holds files that are not SAF's venvs" >&2
fi
