#!/usr/bin/env bash
# bench/run.sh - benchmark spawnd against the bare vfork loop and the classic
# super-servers, side by side, inside a network namespace that has only loopback.
#
#   bash bench/run.sh                      # full run: 3 repetitions, c = 1, 8, 32, both services
#   bash bench/run.sh --quick              # smoke run: 1 repetition, ~1 s per cell
#   bash bench/run.sh --services 1,3000,10000 --servers bare-vfork,spawnd,xinetd,openbsd-inetd
#
# Options handled here: --no-install (use what is there), --no-build (reuse the
# last build), -h/--help. Everything else goes to bench/driver.py (its
# options are listed by --help). Needs root (apt-get, unshare). Results:
# bench/results/latest.md (the table), bench/results/conns.svg (the plot),
# bench/results/raw.jsonl (every cell).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/target/bench     # the programs built here
PEERS=$BENCH/target/peers   # peers that are unpacked or built rather than installed

say() { printf 'run.sh: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Inside the namespace (re-executed by the outer part below).
if [[ "${1:-}" == "--inside" ]]; then
    shift
    ip link set lo up
    # leave nothing behind: the driver stops its servers; the PID namespace
    # (when we have one) takes everything else down with it.
    python3 -B "$BENCH/driver.py" --tools "$OUT/tools.json" "$@" &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
    rc=0
    wait "$child" || rc=$?
    # a signal interrupts the first wait: wait for the driver to clean up
    while kill -0 "$child" 2>/dev/null; do wait "$child" || rc=$?; done
    exit "$rc"
fi

INSTALL=1 BUILD=1
ARGS=()
for a in "$@"; do
    case "$a" in
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help)
            sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            echo
            exec python3 -B "$BENCH/driver.py" --help ;;
        *) ARGS+=("$a") ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    say "needs root (apt-get, unshare --net); run: sudo bash bench/run.sh $*"
    exit 2
fi

mkdir -p "$OUT" "$PEERS"

# ---------------------------------------------------------------------------
# Peers and tools from Debian packages.
APT_UPDATED=0
apt_update() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt-get update"
        apt-get update -qq >/dev/null || say "apt-get update failed"
        APT_UPDATED=1
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }
# grep reads everything (no -q): under pipefail, a grep that quits at the first
# match can kill the writer with SIGPIPE and turn a match into a failure.
have_lib() { ldconfig -p 2>/dev/null | grep -c "$1" >/dev/null; }

install_peers() {
    local need=()
    have xinetd || need+=(xinetd)
    have tcpserver || need+=(ucspi-tcp)
    have tcpsvd || need+=(ipsvd)
    have systemd-socket-activate || need+=(systemd)
    have ip || need+=(iproute2)
    have unshare || need+=(util-linux)
    have python3 || need+=(python3)
    have cc || need+=(gcc libc6-dev)
    have make || need+=(make)
    have bzip2 || need+=(bzip2)
    have xz || need+=(xz-utils)
    have patch || need+=(patch)
    # run-time libraries of the unpacked openbsd-inetd
    have_lib libevent-2.1.so.7 || need+=(libevent-2.1-7)
    have_lib libwrap.so.0 || need+=(libwrap0)
    have_lib libbsd.so.0 || need+=(libbsd0)
    if [[ ${#need[@]} -gt 0 ]]; then
        apt_update
        local ok=() p
        for p in "${need[@]}"; do
            if apt-cache policy "$p" 2>/dev/null | grep -c 'Candidate: [^(]' >/dev/null; then
                ok+=("$p")
            else
                say "package $p is not available here; skipping it"
            fi
        done
        if [[ ${#ok[@]} -gt 0 ]]; then
            say "apt-get install ${ok[*]}"
            # policy-rc.d or not: the installed xinetd has no enabled service
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${ok[@]}" >/dev/null \
                || say "apt-get install failed for some of: ${ok[*]}"
        fi
    fi

    # openbsd-inetd conflicts with xinetd: unpack its .deb instead of installing it.
    if [[ ! -x $PEERS/openbsd-inetd/usr/sbin/inetd ]]; then
        local tmp
        tmp=$(mktemp -d)
        if ! (cd "$tmp" && apt-get download openbsd-inetd >/dev/null 2>&1); then
            apt_update
            (cd "$tmp" && apt-get download openbsd-inetd >/dev/null 2>&1) || true
        fi
        if ls "$tmp"/openbsd-inetd_*.deb >/dev/null 2>&1; then
            rm -rf "$PEERS/openbsd-inetd"
            dpkg -x "$tmp"/openbsd-inetd_*.deb "$PEERS/openbsd-inetd"
            say "unpacked openbsd-inetd into $PEERS/openbsd-inetd"
        else
            say "could not download openbsd-inetd; it will be skipped"
        fi
        rm -rf "$tmp"
    fi

    # busybox inetd: Debian's busybox lacks the applet; build it from Debian's
    # source with CONFIG_INETD=y (a private deb-src list; /etc/apt is untouched).
    if [[ ! -x $PEERS/busybox/busybox ]]; then
        build_busybox || say "busybox inetd could not be built (see $PEERS/busybox-build.log); it will be skipped"
    fi
}

build_busybox() {
    local src=$PEERS/busybox-src apt=$PEERS/apt-src
    rm -rf "$src" "$apt"
    mkdir -p "$src" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources"
    local uris suites
    # the same mirror and suite as the configured binary packages
    uris=$(grep -rhoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    suites=$(grep -rhoE '^Suites:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    if [[ -z $uris ]]; then
        read -r uris suites < <(grep -hE '^deb\s' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2, $3}') || true
    fi
    [[ -n $uris && -n $suites ]] || { say "no Debian source mirror found in /etc/apt"; return 1; }
    cat >"$apt/sources/src.sources" <<EOF
Types: deb-src
URIs: $uris
Suites: $suites
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local o=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources"
             -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    say "building busybox inetd from Debian's busybox source"
    {
        apt-get "${o[@]}" update &&
        (cd "$src" && apt-get "${o[@]}" source --download-only busybox) &&
        cd "$src" && tar xf busybox_*.orig.tar.* && dir=$(ls -d busybox-*/ | head -1) && cd "$dir" &&
        if ls ../busybox_*.debian.tar.* >/dev/null 2>&1; then
            tar xf ../busybox_*.debian.tar.* &&
            if [[ -f debian/patches/series ]]; then
                grep -vE '^\s*(#|$)' debian/patches/series | while read -r p _; do
                    patch -p1 -s <"debian/patches/$p" || echo "patch $p did not apply"
                done
            fi
        fi &&
        make allnoconfig >/dev/null &&
        sed -i -e 's/^# CONFIG_INETD is not set/CONFIG_INETD=y/' \
               -e 's/^# CONFIG_FEATURE_IPV6 is not set/CONFIG_FEATURE_IPV6=y/' .config &&
        { yes '' 2>/dev/null || true; } | make oldconfig >/dev/null &&
        grep -q '^CONFIG_INETD=y' .config &&
        nice make -j"$(nproc)" busybox &&
        mkdir -p "$PEERS/busybox" && cp busybox "$PEERS/busybox/busybox"
    } >"$PEERS/busybox-build.log" 2>&1
}

if [[ $INSTALL -eq 1 ]]; then
    install_peers
fi

# ---------------------------------------------------------------------------
# Build spawnd and the bench tools.
SPAWND_BROKEN=""
if [[ $BUILD -eq 1 ]]; then
    say "cargo build --release (spawnd)"
    if ! (cd "$ROOT" && cargo build --release --quiet) >"$OUT/spawnd-build.log" 2>&1; then
        SPAWND_BROKEN="cargo build --release failed (see bench/target/bench/spawnd-build.log)"
        say "$SPAWND_BROKEN"
    fi
    say "cargo build --release (bench/loadgen)"
    (cd "$BENCH" && cargo build --release --quiet)
    say "cc: services and bare loop"
    cc -O2 -Wall -o "$OUT/hello" "$BENCH/services/hello.c"
    cc -O2 -Wall -nostdlib -static -ffreestanding -fno-stack-protector -fno-pie -no-pie \
        -o "$OUT/hello-nolibc" "$BENCH/services/hello-nolibc.c"
    cc -O2 -Wall -o "$OUT/bareloop" "$BENCH/bare/bareloop.c"
fi
for f in "$OUT/hello" "$OUT/hello-nolibc" "$OUT/bareloop" "$BENCH/target/release/loadgen"; do
    [[ -x $f ]] || { say "missing $f (run without --no-build)"; exit 1; }
done
[[ $("$OUT/hello") == spawnd-bench-ok && $("$OUT/hello-nolibc") == spawnd-bench-ok ]] \
    || { say "the service programs do not print the expected reply"; exit 1; }

SPAWND=$ROOT/target/release/spawnd
if [[ -z $SPAWND_BROKEN && ! -x $SPAWND ]]; then
    SPAWND_BROKEN="no $SPAWND"
fi

jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
path_or_null() { if [[ -n $1 && -x $1 ]]; then jstr "$1"; else echo null; fi; }
cat >"$OUT/tools.json" <<EOF
{
  "loadgen": $(jstr "$BENCH/target/release/loadgen"),
  "hello": $(jstr "$OUT/hello"),
  "hello-nolibc": $(jstr "$OUT/hello-nolibc"),
  "bareloop": $(jstr "$OUT/bareloop"),
  "spawnd": $(path_or_null "$SPAWND"),
  "spawnd_before": $(path_or_null "${SPAWND_BEFORE:-}"),
  "spawnd_broken": $(if [[ -n $SPAWND_BROKEN ]]; then jstr "$SPAWND_BROKEN"; else echo null; fi),
  "xinetd": $(path_or_null "$(command -v xinetd || true)"),
  "tcpserver": $(path_or_null "$(command -v tcpserver || true)"),
  "tcpsvd": $(path_or_null "$(command -v tcpsvd || true)"),
  "systemd-socket-activate": $(path_or_null "$(command -v systemd-socket-activate || true)"),
  "openbsd-inetd": $(path_or_null "$PEERS/openbsd-inetd/usr/sbin/inetd"),
  "openbsd-inetd-why": "openbsd-inetd could not be downloaded and unpacked",
  "busybox": $(path_or_null "$PEERS/busybox/busybox"),
  "busybox-why": "Debian's busybox has no inetd applet, and building it from Debian's source failed (see bench/target/peers/busybox-build.log)"
}
EOF

# ---------------------------------------------------------------------------
# Into a network namespace with only loopback (and a PID namespace, so that
# nothing started in there outlives the run).
export BENCH_CMDLINE="bash bench/run.sh${ARGS[*]:+ ${ARGS[*]}}"
say "entering a loopback-only network namespace"
if unshare --net --pid --fork --kill-child --mount-proc true 2>/dev/null; then
    exec unshare --net --pid --fork --kill-child --mount-proc -- bash "$BENCH/run.sh" --inside "${ARGS[@]}"
fi
say "no PID namespace here; using a network namespace only"
exec unshare --net -- bash "$BENCH/run.sh" --inside "${ARGS[@]}"
