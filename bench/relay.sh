#!/usr/bin/env bash
# The relay benchmark (issue 22): spawnd's `redirect` against the reference
# C relays (bench/relay/crelay.c, splice and read/write) and the relaying
# peers (systemd-socket-proxyd, HAProxy, rinetd, socat, xinetd), behind one
# C backend, inside a loopback-only network namespace.
#
#   bash bench/relay.sh            full run (3 repetitions, about 10 minutes)
#   bash bench/relay.sh --quick    smoke run (CI): 1 repetition, short cells
#   options: --reps N --duration S --servers "spawnd,C relay (splice)" --out DIR
#            --no-install --no-build
# Results: bench/results/relay.md, relay.svg, relay-raw.json (or --out DIR).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/target/relay
say() { printf 'relay.sh: %s\n' "$*" >&2; }

if [[ "${1:-}" == "--inside" ]]; then
    shift
    ip link set lo up
    # As many descriptors as this machine allows (the idle-relay cells hold
    # thousands of connections in the client, the relay and the backend).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
    exec python3 -B "$BENCH/relay.py" --tools "$OUT/tools.json" "$@"
fi

INSTALL=1 BUILD=1
ARGS=()
for a in "$@"; do
    case "$a" in
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        *) ARGS+=("$a") ;;
    esac
done
if [[ $(id -u) -ne 0 ]]; then
    say "needs root (apt-get, unshare --net); run: sudo bash bench/relay.sh $*"
    exit 2
fi
mkdir -p "$OUT"
have() { command -v "$1" >/dev/null 2>&1; }
if [[ $INSTALL -eq 1 ]]; then
    need=()
    have haproxy || need+=(haproxy)
    have rinetd || need+=(rinetd)
    have socat || need+=(socat)
    have xinetd || need+=(xinetd)
    have systemd-socket-activate || need+=(systemd)
    [[ -x /lib/systemd/systemd-socket-proxyd ]] || need+=(systemd)
    have ip || need+=(iproute2)
    have cc || need+=(gcc libc6-dev)
    if [[ ${#need[@]} -gt 0 ]]; then
        say "apt-get install ${need[*]}"
        apt-get update -qq >/dev/null || say "apt-get update failed"
        # Installing a daemon's package must not start it here (policy-rc.d
        # says no to every init script while it is in place).
        policy=/usr/sbin/policy-rc.d
        created_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || say "apt-get install failed for some of: ${need[*]}"
        [[ $created_policy -eq 1 ]] && rm -f "$policy"
    fi
fi
if [[ $BUILD -eq 1 ]]; then
    (cd "$ROOT" && cargo build --release -q)
    for f in crelay backend relayload; do
        cc -O2 -Wall -o "$OUT/$f" "$BENCH/relay/$f.c" -lpthread
    done
fi
jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
path_or_null() { if [[ -n $1 && -x $1 ]]; then jstr "$1"; else echo null; fi; }
proxyd=/lib/systemd/systemd-socket-proxyd
[[ -x $proxyd ]] || proxyd=/usr/lib/systemd/systemd-socket-proxyd
skipped=()
for tool in haproxy rinetd socat xinetd systemd-socket-activate; do
    have "$tool" || skipped+=("[\"$tool\", \"not installed\"]")
done
cat >"$OUT/tools.json" <<JSON
{
  "crelay": $(jstr "$OUT/crelay"),
  "backend": $(jstr "$OUT/backend"),
  "relayload": $(jstr "$OUT/relayload"),
  "spawnd": $(jstr "$ROOT/target/release/spawnd"),
  "spawnd_before": $(path_or_null "${SPAWND_BEFORE:-}"),
  "haproxy": $(path_or_null "$(command -v haproxy || true)"),
  "rinetd": $(path_or_null "$(command -v rinetd || true)"),
  "socat": $(path_or_null "$(command -v socat || true)"),
  "xinetd": $(path_or_null "$(command -v xinetd || true)"),
  "socket-activate": $(path_or_null "$(command -v systemd-socket-activate || true)"),
  "proxyd": $(path_or_null "$proxyd"),
  "nofile": $(n=$(ulimit -Hn); [[ $n == unlimited ]] && n=1048576; echo "$n"),
  "skipped": [$(IFS=,; echo "${skipped[*]:-}")]
}
JSON
export BENCH_CMDLINE="bash bench/relay.sh${ARGS[*]:+ ${ARGS[*]}}"
say "entering a loopback-only network namespace"
if unshare --net --pid --fork --kill-child --mount-proc true 2>/dev/null; then
    exec unshare --net --pid --fork --kill-child --mount-proc -- bash "$BENCH/relay.sh" --inside "${ARGS[@]}"
fi
exec unshare --net -- bash "$BENCH/relay.sh" --inside "${ARGS[@]}"
