#!/usr/bin/env bash
# Packaging test (CI): builds the .deb, checks its contents, installs it with
# apt (which brings update-inetd), checks the installed configuration and
# unit, runs the installed binary against a copied example on a loopback
# port and talks to it, serves /etc/inetd.conf while a real package
# (micro-httpd) registers itself there with update-inetd, is disabled,
# enabled, restricted in hosts.deny and purged, then removes and purges the
# package and checks that the admin's own files survive both. Needs root;
# skipped otherwise.
#
# usage: packaging/test-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "test-deb: SKIPPED: needs root to install packages"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
step() { printf '\n== test-deb: %s\n' "$*"; }
fail() {
    echo "test-deb: FAILED: $*" >&2
    exit 1
}

step "installing what the test needs"
needs=(dpkg-dev man-db)
missing=()
for package in "${needs[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y --no-install-recommends "${missing[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
fi
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb
if dpkg-query -W -f='${Status}' spawnd 2>/dev/null | grep -q 'installed'; then
    fail "a spawnd package is already installed on this machine; not touching it"
fi

step "building the package"
# cargo deb prints the path of the package it wrote, last, on stdout.
deb=$(packaging/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "no .deb built (got '$deb')"
echo "test-deb: $deb"

step "checking the file list"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in \
    ./usr/sbin/spawnd \
    ./etc/spawnd/spawnd.yaml \
    ./etc/spawnd/services.d/ \
    ./etc/spawnd/services.d/README \
    ./usr/lib/systemd/system/spawnd.service \
    ./usr/share/man/man8/spawnd.8.gz \
    ./usr/share/man/man8/spawnd-run.8.gz \
    ./usr/share/man/man8/spawnd-check.8.gz \
    ./usr/share/man/man5/spawnd.yaml.5.gz \
    ./usr/share/bash-completion/completions/spawnd \
    ./usr/share/zsh/vendor-completions/_spawnd \
    ./usr/share/fish/vendor_completions.d/spawnd.fish \
    ./usr/share/doc/spawnd/copyright \
    ./usr/share/doc/spawnd/examples/tftp.yaml \
    ./usr/share/doc/spawnd/examples/rsync.yaml \
    ./usr/share/doc/spawnd/examples/git-daemon.yaml \
    ./usr/share/doc/spawnd/examples/ctf-challenge.yaml \
    ./usr/share/doc/spawnd/examples/check-mk-agent.yaml \
    ./usr/share/doc/spawnd/examples/node-exporter.yaml \
    ./usr/share/doc/spawnd/examples/loopback/daytime.yaml; do
    grep -qxF "$path" <<<"$contents" || fail "$path is not in the package"
done
if grep -v -e '^\./etc/spawnd/' -e '^\./usr/' <<<"$contents" | grep -v -e '^\./$' -e '^\./etc/$'; then
    fail "files outside /usr and /etc/spawnd (listed above)"
fi
conffiles=$(dpkg-deb -I "$deb" conffiles)
[ "$conffiles" = "$(printf '/etc/spawnd/services.d/README\n/etc/spawnd/spawnd.yaml')" ] ||
    [ "$conffiles" = "$(printf '/etc/spawnd/spawnd.yaml\n/etc/spawnd/services.d/README')" ] ||
    fail "unexpected conffiles: $conffiles"
control=$(dpkg-deb -f "$deb")
echo "$control"
if grep -qiE '^(Conflicts|Replaces|Breaks):' <<<"$control"; then
    fail "the package must not Conflict/Replace/Break anything"
fi
# It takes the inetd slot: packages that need one install with spawnd alone.
grep -qx 'Provides: inet-superserver' <<<"$control" || fail "does not provide inet-superserver"
grep -qE '^Depends:.*\bupdate-inetd\b' <<<"$control" || fail "does not depend on update-inetd"
if dpkg-query -W -f='${Status}' micro-httpd 2>/dev/null | grep -q 'installed'; then
    fail "micro-httpd is already installed on this machine; not touching it"
fi
# Whether the machine had an inetd.conf before (then it must not change).
had_inetd_conf=no
if [ -e /etc/inetd.conf ]; then
    had_inetd_conf=yes
    inetd_conf_before=$(sha256sum /etc/inetd.conf)
fi
# Package scripts must not start daemons (another inetd, say).
made_policy=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=yes
fi

step "installing with apt (update-inetd comes with it)"
apt-get install -y --no-install-recommends "$(realpath "$deb")" ||
    { apt-get update && apt-get install -y --no-install-recommends "$(realpath "$deb")"; }
# A failure from here on must not leave the package behind: the next run
# (CI runs on the same machine again) would refuse to start.
purge_on_failure() {
    if [ "${purged:-no}" != yes ] && dpkg-query -W -f='${Status}' spawnd 2>/dev/null | grep -q installed; then
        echo "test-deb: purging the package after the failure"
        dpkg --purge spawnd >/dev/null 2>&1 || true
    fi
}
trap purge_on_failure EXIT
[ -x /usr/sbin/spawnd ] || fail "/usr/sbin/spawnd missing after install"
/usr/sbin/spawnd --version

step "spawnd check -c /etc/spawnd"
/usr/sbin/spawnd check -c /etc/spawnd

step "the example service files check with the installed binary"
packaging/check-examples.sh /usr/sbin/spawnd

step "systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify /usr/lib/systemd/system/spawnd.service
else
    echo "test-deb: systemd-analyze not installed; unit not verified"
fi

step "manual pages"
if command -v man >/dev/null 2>&1; then
    for page in "8 spawnd" "5 spawnd.yaml" "8 spawnd-run"; do
        # shellcheck disable=SC2086
        MANWIDTH=80 man -P cat $page 2>&1 >/dev/null | tee /tmp/test-deb-man.err
        [ ! -s /tmp/test-deb-man.err ] || fail "man $page printed warnings"
    done
    MANWIDTH=80 man -P cat 5 spawnd.yaml | grep -q 'per_source_pause' ||
        fail "spawnd.yaml(5) does not render"
    # The SYNOPSIS shows what each option takes; the footer names spawnd.
    MANWIDTH=200 man -P cat 8 spawnd-run | grep -q -- '--config-dir DIR' ||
        fail "spawnd-run(8) SYNOPSIS has no value placeholders"
    MANWIDTH=200 man -P cat 8 spawnd-run | tail -n 1 | grep -q 'spawnd 0' ||
        fail "spawnd-run(8) footer does not name spawnd"
fi
grep -q 'compgen -W "off error warn info debug trace"' /usr/share/bash-completion/completions/spawnd ||
    fail "bash completion of --log-level does not offer the levels"

if [ -d /run/systemd/system ]; then
    step "the unit under systemd"
    systemctl start spawnd
    systemctl is-active spawnd
    systemctl reload spawnd
    systemctl is-active spawnd
    systemctl stop spawnd
fi

step "serving a copied example on a loopback port"
work=$(mktemp -d)
spawnd_pid=""
cleanup() {
    [ -z "$spawnd_pid" ] || kill -9 "$spawnd_pid" 2>/dev/null || true
    # What the inetd.conf steps change on the machine, put back.
    if [ "${restored:-no}" != yes ]; then
        if [ -n "${deny_backup:-}" ] && grep -q '^micro-httpd: 10.0.0.1$' /etc/hosts.deny 2>/dev/null; then
            restore_deny
        fi
        if dpkg-query -W -f='${Status}' micro-httpd 2>/dev/null | grep -q installed; then
            apt-get purge -y micro-httpd >/dev/null 2>&1 || true
        fi
        rm -f /var/www/html/spawnd-test.txt
        [ "${had_inetd_conf:-yes}" = yes ] || rm -f /etc/inetd.conf
        [ "${made_policy:-no}" = no ] || rm -f /usr/sbin/policy-rc.d
    fi
    rm -rf "$work"
    purge_on_failure
}
trap cleanup EXIT
mkdir -p "$work/conf/services.d"
cp /etc/spawnd/spawnd.yaml "$work/conf/spawnd.yaml"
# A port below the kernel's ephemeral range (32768 and up on Linux), where
# no outgoing connection can hold it; another test may still have taken
# it, so a bind failure means: try the next one.
port=""
for candidate in $(shuf -i 20000-32000 -n 20); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
        continue
    fi
    sed "s/^listen: .*/listen: 127.0.0.1:$candidate/" \
        /usr/share/doc/spawnd/examples/loopback/daytime.yaml >"$work/conf/services.d/daytime.yaml"
    /usr/sbin/spawnd check -c "$work/conf"
    /usr/sbin/spawnd run -c "$work/conf" 2>"$work/log" &
    spawnd_pid=$!
    for _ in $(seq 200); do
        grep -q 'ready services=1' "$work/log" && break
        kill -0 "$spawnd_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q 'ready services=1' "$work/log"; then
        port=$candidate
        break
    fi
    cat "$work/log"
    grep -q 'Address already in use' "$work/log" || fail "spawnd did not start"
    wait "$spawnd_pid" 2>/dev/null || true
    spawnd_pid=""
done
[ -n "$port" ] || fail "no loopback port could be bound"
exec 3<>"/dev/tcp/127.0.0.1/$port"
answer=$(timeout 10 cat <&3)
exec 3<&-
echo "test-deb: daytime answered: $answer"
grep -qE '[0-9]{4}' <<<"$answer" || fail "no date from the daytime service"
for _ in $(seq 100); do
    grep -q 'exit service=daytime' "$work/log" && break
    sleep 0.1
done
grep -q 'accept service=daytime' "$work/log" || { cat "$work/log"; fail "no accept line"; }

step "stopping with SIGTERM"
kill -TERM "$spawnd_pid"
status=0
wait "$spawnd_pid" || status=$?
spawnd_pid=""
cat "$work/log"
[ "$status" = 0 ] || fail "spawnd exited with $status after SIGTERM"

step "serving /etc/inetd.conf: a real package registers itself with update-inetd"
if [ "$had_inetd_conf" = yes ]; then
    [ "$(sha256sum /etc/inetd.conf)" = "$inetd_conf_before" ] || fail "the install changed the admin's /etc/inetd.conf"
else
    grep -q '^#:STANDARD:' /etc/inetd.conf || fail "no commented /etc/inetd.conf was created"
fi
# An inetd is satisfied by spawnd alone: apt would install no other one for
# ident2 (openbsd-inetd | inet-superserver), even were xinetd removed.
plan=$(apt-get install -s --no-install-recommends ident2 xinetd- 2>&1) || { echo "$plan"; fail "apt cannot plan ident2"; }
if grep -E '^Inst (openbsd-inetd|inetutils-inetd|rlinetd|micro-inetd|xinetd) ' <<<"$plan"; then
    fail "apt wants another inet-superserver besides spawnd"
fi
# The packaged spawnd, in a loopback-only network namespace (micro-httpd
# listens on port 80); the files it reads are the real ones in /etc.
unshare --net -- sh -c 'ip link set lo up && exec /usr/sbin/spawnd run -c /etc/spawnd' 2>"$work/inetd.log" &
inetd_pid=$!
spawnd_pid=$inetd_pid
wait_log() { # PATTERN [COUNT]: until the log has COUNT lines matching
    for _ in $(seq 300); do
        [ "$(grep -c -- "$1" "$work/inetd.log")" -ge "${2:-1}" ] && return 0
        kill -0 "$inetd_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/inetd.log"
    fail "spawnd's log never had ${2:-1} line(s) with '$1'"
}
http_get() { # PATH: the answer of micro-httpd through spawnd, or nothing
    nsenter --net="/proc/$inetd_pid/ns/net" -- bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/80 || exit 0; printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3; timeout 10 cat <&3' \
        sh "$1" 2>/dev/null || true
}
wait_log 'ready services='
apt-get install -y --no-install-recommends micro-httpd
grep -E '^www[[:space:]].*micro-httpd' /etc/inetd.conf || fail "micro-httpd did not register in /etc/inetd.conf"
wait_log 'listening service=www addr=0.0.0.0:80'
echo "spawnd-test-$$" >/var/www/html/spawnd-test.txt
answer=$(http_get /spawnd-test.txt)
echo "$answer"
grep -q "spawnd-test-$$" <<<"$answer" || fail "micro-httpd did not answer through spawnd"

step "update-inetd --disable and --enable take effect without a signal"
update-inetd --disable www
wait_log 'service_removed service=www'
[ -z "$(http_get /spawnd-test.txt)" ] || fail "still served after update-inetd --disable"
update-inetd --enable www
wait_log 'listening service=www addr=0.0.0.0:80' 2
grep -q "spawnd-test-$$" <<<"$(http_get /spawnd-test.txt)" || fail "not served after update-inetd --enable"

step "a TCP Wrappers rule spawnd cannot honour keeps the entry from starting"
deny_backup="$work/hosts.deny.orig"
if [ -e /etc/hosts.deny ]; then cp -p /etc/hosts.deny "$deny_backup"; fi
restore_deny() {
    if [ -e "$deny_backup" ]; then cp -p "$deny_backup" /etc/hosts.deny; else rm -f /etc/hosts.deny; fi
}
echo "micro-httpd: 10.0.0.1" >>/etc/hosts.deny
wait_log 'include_refused service=www'
restore_deny
grep 'include_refused service=www' "$work/inetd.log" | grep -q 'hosts.deny' ||
    fail "the refusal does not name hosts.deny"
wait_log 'listening service=www addr=0.0.0.0:80' 3
grep -q "spawnd-test-$$" <<<"$(http_get /spawnd-test.txt)" || fail "not served once the rule is gone"

step "purging micro-httpd removes its entry, and spawnd stops serving it"
rm -f /var/www/html/spawnd-test.txt
apt-get purge -y micro-httpd
! grep -qE '^[^#]*micro-httpd' /etc/inetd.conf || fail "the entry is still in /etc/inetd.conf"
wait_log 'service_removed service=www' 2
[ -z "$(http_get /)" ] || fail "still served after the purge"
# Nobody signalled spawnd: it reloaded on its own each time (update-inetd
# found no /run/inetd.pid naming an inetd; whatever /etc/init.d/*inetd it
# asked invoke-rc.d to restart, policy-rc.d kept from running).
grep -q 'include_reload path=/etc/inetd.conf' "$work/inetd.log" || fail "no reload from the watch"
[ "$(grep -c 'include_reload' "$work/inetd.log")" = "$(grep -c 'reload_start' "$work/inetd.log")" ] ||
    fail "a reload came from somewhere else than the watch"
kill -0 "$inetd_pid" || fail "spawnd is gone"
kill -TERM "$inetd_pid"
wait "$inetd_pid" || true
spawnd_pid=""
cat "$work/inetd.log"

step "dpkg -r keeps conffiles and the admin's service files"
admin=/etc/spawnd/services.d/zz-test-deb-$$.yaml
printf 'listen: 127.0.0.1:%s\nexec: [/bin/true]\n' "$port" >"$admin"
/usr/sbin/spawnd check -c /etc/spawnd
dpkg -r spawnd
[ ! -e /usr/sbin/spawnd ] || fail "/usr/sbin/spawnd left after dpkg -r"
[ -f "$admin" ] || fail "dpkg -r deleted the admin's $admin"
[ -f /etc/spawnd/spawnd.yaml ] || fail "dpkg -r deleted the conffile spawnd.yaml"
dpkg-query -W -f='${Status}\n' spawnd | grep -q 'config-files' || fail "not in config-files state"

step "dpkg --purge removes conffiles, not the admin's files"
dpkg --purge spawnd
purged=yes
[ -f "$admin" ] || fail "dpkg --purge deleted the admin's $admin"
[ ! -e /etc/spawnd/spawnd.yaml ] || fail "dpkg --purge left the conffile spawnd.yaml"
[ ! -e /etc/spawnd/services.d/README ] || fail "dpkg --purge left the conffile services.d/README"
[ -e /etc/inetd.conf ] || fail "dpkg --purge removed /etc/inetd.conf (never spawnd's to remove)"
if [ "$had_inetd_conf" = no ]; then
    rm -f /etc/inetd.conf # the test leaves the machine as it found it
fi
if [ "$made_policy" = yes ]; then
    rm -f /usr/sbin/policy-rc.d
fi
restored=yes
echo "test-deb: after purge, /etc/spawnd holds only the admin's file:"
find /etc/spawnd
rm -f "$admin"
rmdir /etc/spawnd/services.d /etc/spawnd 2>/dev/null || true

echo
echo "test-deb: 1 passed, 0 failed"
