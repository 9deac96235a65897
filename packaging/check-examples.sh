#!/usr/bin/env bash
# Runs `spawnd check` on every example service file, each in a configuration
# directory of its own. Where an example's program or user is not installed
# on this machine, the check is repeated with /bin/true or nobody in its
# place (and says so), so every other key is still checked.
#
# usage: packaging/check-examples.sh [SPAWND_BINARY]   (default: target/release/spawnd)
set -euo pipefail
cd "$(dirname "$0")/.."
spawnd=${1:-target/release/spawnd}
failed=0
for example in packaging/examples/*.yaml services.d/*.yaml; do
    dir=$(mktemp -d)
    mkdir "$dir/services.d"
    file="$dir/services.d/$(basename "$example")"
    cp "$example" "$file"
    notes=""
    for _ in 1 2 3 4; do
        if out=$("$spawnd" check --insecure-config -c "$dir" 2>&1); then
            break
        fi
        program=$(sed -n 's/.*exec: program \(\/[^:]*\): No such file or directory.*/\1/p' <<<"$out" | head -1)
        user=$(sed -n 's/.*user: no such user "\([^"]*\)".*/\1/p' <<<"$out" | head -1)
        group=$(sed -n 's/.*group: no such group "\([^"]*\)".*/\1/p' <<<"$out" | head -1)
        if [ -n "$program" ]; then
            sed -i "s|$program|/bin/true|" "$file"
            notes+=" (program $program not installed: checked with /bin/true)"
        elif [ -n "$user" ]; then
            sed -i "s|^user: *$user\b|user: nobody|" "$file"
            notes+=" (user $user does not exist: checked with nobody)"
        elif [ -n "$group" ]; then
            sed -i "s|^group: *$group\b|group: nogroup|" "$file"
            notes+=" (group $group does not exist: checked with nogroup)"
        else
            break
        fi
    done
    if out=$("$spawnd" check --insecure-config -c "$dir" 2>&1); then
        echo "ok   $example$notes"
    else
        echo "FAIL $example$notes"
        sed 's/^/     /' <<<"$out"
        failed=1
    fi
    rm -rf "$dir"
done
exit $failed
