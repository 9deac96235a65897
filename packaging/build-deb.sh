#!/usr/bin/env bash
# Builds the Debian package target/debian/spawnd_VERSION-1_ARCH.deb:
#   1. cargo build --release (build.rs renders the man pages and shell
#      completions from src/cli/args.rs into its OUT_DIR);
#   2. copies them, and the systemd unit adapted to the systemd version, into
#      target/packaging/;
#   3. cargo deb --no-build (metadata: [package.metadata.deb] in Cargo.toml).
#
# usage: packaging/build-deb.sh [cargo deb options, e.g. --deb-revision 2]
# SPAWND_UNIT_TYPE=notify-reload|notify|auto (default auto): the unit's Type=.
#   notify-reload needs systemd 253+; auto picks it when this machine's systemd
#   is 253 or newer, else Type=notify with ExecReload=/bin/kill -HUP $MAINPID
#   (Debian 12 has systemd 252). Set it when building for another release.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb" >&2
    cargo install cargo-deb
fi

# 1. Build, and find build.rs's OUT_DIR from cargo's own report: the
# build-script-executed message whose package is this manifest's (its
# package id is `path+file:///DIR#0.1.0` when the directory is named
# spawnd, `...#spawnd@0.1.0` otherwise: so match on the fields, with jq-less
# python3, not on the id's text).
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
cargo build --release --message-format=json-render-diagnostics >"$messages"
manifest=$(pwd)/Cargo.toml
out_dir=$(python3 - "$messages" "$manifest" <<'PY'
import json, sys
found = ""
for line in open(sys.argv[1]):
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") != "build-script-executed":
        continue
    package = message.get("package_id", "")
    # The manifest's directory is in a path package id, whatever its name.
    directory = sys.argv[2].rsplit("/", 1)[0]
    if package.startswith("path+file://" + directory + "#"):
        found = message.get("out_dir", "")
print(found)
PY
)
if [ -z "$out_dir" ] || [ ! -f "$out_dir/man/spawnd.8" ]; then
    echo "build-deb: no generated man pages found (OUT_DIR '$out_dir')" >&2
    exit 1
fi

# 2. Collect the generated files (never checked in) and the unit.
staging=target/packaging
rm -rf "$staging"
mkdir -p "$staging/man" "$staging/completions" "$staging/systemd"
cp "$out_dir"/man/*.8 "$staging/man/"
cp "$out_dir"/completions/{spawnd.bash,_spawnd,spawnd.fish} "$staging/completions/"

unit_type=${SPAWND_UNIT_TYPE:-auto}
if [ "$unit_type" = auto ]; then
    version=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
    if [ -n "$version" ] && [ "$version" -ge 253 ]; then
        unit_type=notify-reload
    else
        unit_type=notify
    fi
fi
case "$unit_type" in
notify-reload)
    cp packaging/spawnd.service "$staging/systemd/spawnd.service"
    ;;
notify)
    sed 's|^Type=notify-reload$|Type=notify\nExecReload=/bin/kill -HUP $MAINPID|' \
        packaging/spawnd.service >"$staging/systemd/spawnd.service"
    grep -qx 'Type=notify' "$staging/systemd/spawnd.service"
    ;;
*)
    echo "build-deb: SPAWND_UNIT_TYPE must be notify-reload, notify or auto" >&2
    exit 2
    ;;
esac
echo "build-deb: systemd unit with Type=$unit_type" >&2
# spawnd's own maintainer scripts; cargo-deb adds the systemd part at their
# DEBHELPER token.
cp packaging/debian/postinst "$staging/systemd/postinst"

# 3. Package what was just built; cargo deb prints the .deb's path last
# (under the target directory: target/debian/ unless CARGO_TARGET_DIR is set).
cargo deb --no-build "$@"
