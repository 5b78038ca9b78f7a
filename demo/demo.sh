#!/usr/bin/env bash
# See kvmnet work: make a private network with `kvmnet net up`, boot a QEMU
# guest whose tap kvmnet-ifup attaches to it and kvmnet-ifdown removes, watch
# the guest get a DHCP lease from the network's dnsmasq, and take the network
# down again with `kvmnet net down`.
#
#   sudo demo/demo.sh          (from the repository root)
#
# Everything happens in a throwaway network namespace with a /run of its own
# (a directory of the demo bound over /run for every command, so that
# /run/kvmnet and the network's dnsmasq files are the demo's): a [[network]]
# "demo" (bridge kvdemo0, 10.77.0.1/24, DHCP 10.77.0.100-199) and QEMU (TCG,
# no KVM needed) whose iPXE firmware asks for a lease. The machine's own
# interfaces and /run are never touched. Whatever happens (failure, Ctrl-C),
# the network, the namespace, the processes and the temp dir are removed.
#
# Needs: root, cargo, iproute2, util-linux, qemu-system-x86 ipxe-qemu dnsmasq-base.
# Exits non-zero if the guest gets no lease within 60 s.
set -euo pipefail
export LC_ALL=C # "1.5", not "1,5", in $EPOCHREALTIME and printf
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

LEASE_TIMEOUT=60
NET=demo
BRIDGE=kvdemo0
TAP=vm0
GUEST_MAC=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
NS="kvmnet-demo-$$-$RANDOM"
WORK=""
RUN=""     # $WORK/run: /run of every command in the namespace
NET_DIR="" # $RUN/kvmnet/net/$NET: dnsmasq.pid, leases, hosts.d/
KVMNET=""
QEMU_PID=""

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '%s==>%s %s\n' "$B" "$N" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
indent() { sed 's/^/    /'; }
# Seconds since $1 (an $EPOCHREALTIME value), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
nsip() { ip -n "$NS" "$@"; }
# nsrun PROG ARGS...: PROG in the namespace, with $RUN bound over /run in a
# mount namespace of its own. Everything that touches /run/kvmnet (kvmnet,
# kvmnet-ifup/-ifdown, QEMU running them) goes through here, so that all see
# the same /run/kvmnet; dnsmasq keeps the mount namespace of `net up`, whose
# /run is the same directory. `nsrun -b PROG ARGS...` runs it in the background
# with $! its pid (each step execs the next: that is PROG's own pid, not that
# of a subshell, as `nsrun PROG &` would give).
nsrun() {
    local bg=""
    [[ $1 == -b ]] && bg=1 && shift
    # shellcheck disable=SC2016 # $1 and $@ are the inner sh's
    set -- ip netns exec "$NS" unshare --mount --propagation private \
        sh -c 'mount --bind "$1" /run && shift && exec "$@"' sh "$RUN" "$@"
    if [[ -n $bg ]]; then "$@" & else "$@"; fi
}
knet() { nsrun "$KVMNET" net "$@" --config "$KVMNET_CONFIG"; }
ports() { nsip -o link show master "$BRIDGE" | awk -F': ' '{ sub(/@.*/, "", $2); printf "%s ", $2 }'; }
link_field() { # link_field DEV FIELD: "mtu" or "link/ether" from `ip -o link show`
    nsip -o link show dev "$1" | awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'
}
# A live process (not a zombie) of that pid: what `kvmnet net` calls running.
alive() { [[ -n $(tr -d '\0' 2>/dev/null </proc/"$1"/cmdline) ]]; }
# The network's dnsmasq: the pid in its pid file, if that process runs.
dnsmasq_pid() {
    local pid
    pid=$(cat "$NET_DIR/dnsmasq.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && echo "$pid"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -TERM "$QEMU_PID" # a clean QEMU exit runs downscript=
        for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    if ip netns list | awk '{ print $1 }' | grep -qxF -- "$NS"; then
        # What `net up` made (also half of it, if it was interrupted).
        if [[ -n $NET_DIR && -d $NET_DIR && -x $KVMNET ]]; then
            knet down --force "$NET" 2>&1 | sed 's/^/demo: cleanup: /'
        fi
        # Should that have failed: the dnsmasq of the pid file, if it is a
        # dnsmasq in this namespace (never another process of that pid).
        if [[ -n $NET_DIR ]] && pid=$(dnsmasq_pid) &&
            [[ $(tr '\0' ' ' </proc/"$pid"/cmdline) == */dnsmasq\ * ]] &&
            [[ $(ip netns identify "$pid" 2>/dev/null) == "$NS" ]]; then
            kill -KILL "$pid" 2>/dev/null
        fi
        for pid in $(ip netns pids "$NS"); do kill -KILL "$pid" 2>/dev/null; done
        wait 2>/dev/null
        ip netns del "$NS"
    fi
    [[ -n $WORK ]] && rm -rf -- "$WORK"
    echo "demo: cleaned up (network $NET down, namespace $NS deleted, no QEMU or dnsmasq left, temp dir removed)"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM

[[ $EUID -eq 0 ]] || die "run as root (network namespaces, taps): sudo $0"
[[ -f Cargo.toml && -d src ]] || cd "$(dirname "$0")/.."
# On Debian/Ubuntu, bring in what is missing (the README's set-up is this one command).
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v dnsmasq >/dev/null || [[ ! -e /usr/lib/ipxe/qemu/efi-virtio.rom && ! -e /usr/share/qemu/efi-virtio.rom ]]; then
    if command -v apt-get >/dev/null; then
        say "installing qemu-system-x86 ipxe-qemu dnsmasq-base iproute2 (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 ipxe-qemu dnsmasq-base iproute2 >/dev/null
    fi
fi
for prog in cargo ip unshare mount qemu-system-x86_64 dnsmasq; do
    command -v "$prog" >/dev/null || die "$prog not found; needs cargo, iproute2, util-linux and: apt-get install qemu-system-x86 ipxe-qemu dnsmasq-base"
done
# kvmnet trusts KVMNET_CONFIG only from real root, not on behalf of a sudo user.
unset SUDO_UID SUDO_GID

say "building: cargo build --release"
cargo build --release --quiet
KVMNET=$PWD/target/release/kvmnet
IFUP=$PWD/target/release/kvmnet-ifup
IFDOWN=$PWD/target/release/kvmnet-ifdown

WORK=$(mktemp -d /tmp/kvmnet-demo.XXXXXX)
RUN=$WORK/run
NET_DIR=$RUN/kvmnet/net/$NET
mkdir -m 0755 "$RUN"
cat >"$WORK/kvmnet.toml" <<EOF
[[network]]
name = "$NET"
bridge = "$BRIDGE"
ipv4 = "10.77.0.1/24"
dhcp_range = ["10.77.0.100", "10.77.0.199"]

[[rule]]
match = "*"
network = "$NET"
EOF
# For kvmnet-ifup/-ifdown: QEMU passes its environment to script=/downscript=.
export KVMNET_CONFIG=$WORK/kvmnet.toml
say "config $KVMNET_CONFIG:"
indent <"$KVMNET_CONFIG"

say "namespace $NS, /run there: $RUN"
ip netns add "$NS"
nsip link set lo up

say "kvmnet net up $NET"
knet up "$NET" | indent
DNSMASQ_PID=$(dnsmasq_pid) || die "no dnsmasq runs for network $NET (pid file $NET_DIR/dnsmasq.pid)"
BRIDGE_MAC=$(link_field "$BRIDGE" link/ether)
say "bridge $BRIDGE: mac $BRIDGE_MAC, mtu $(link_field "$BRIDGE" mtu), $(nsip -o -4 addr show dev "$BRIDGE" | awk '{ print $4 }')"
say "dnsmasq pid $DNSMASQ_PID:$(tr '\0' '\n' </proc/"$DNSMASQ_PID"/cmdline |
    grep -E '^--(interface|bind-dynamic|dhcp-range|dhcp-leasefile)' | tr '\n' ' ' | sed 's/^/ /')"
say "kvmnet net list"
knet list | indent

say "timing kvmnet-ifup on a pre-created tap (10 attach/detach cycles, in the namespace)"
nsip tuntap add timing0 mode tap
# shellcheck disable=SC2016 # the inner bash's variables
nsrun bash -c '
    set -e
    for i in $(seq 10); do
        a=$EPOCHREALTIME; "$1" timing0 2>>"$3"; b=$EPOCHREALTIME
        "$2" timing0 2>>"$3"
        echo "$a $b"
    done' _ "$IFUP" "$IFDOWN" "$WORK/timing.err" |
    awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' | sort -n |
    awk '{ t[NR] = $1 } END {
        printf "    kvmnet-ifup wall time: min %.1f ms, median %.1f ms, max %.1f ms (fork+exec included)\n",
            t[1], (t[int((NR + 1) / 2)] + t[int(NR / 2) + 1]) / 2, t[NR] }' ||
    die "kvmnet-ifup/ifdown failed on tap timing0: $(tail -n 2 "$WORK/timing.err")"
nsip link del timing0

say "starting QEMU (TCG, iPXE only): -netdev tap,ifname=$TAP,script=kvmnet-ifup,downscript=kvmnet-ifdown"
START=$EPOCHREALTIME
nsrun -b qemu-system-x86_64 -machine q35,accel=tcg -m 128 -nodefaults -no-user-config \
    -display none -serial none -monitor none -boot n \
    -netdev "tap,id=n0,ifname=$TAP,script=$IFUP,downscript=$IFDOWN" \
    -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" </dev/null >/dev/null 2>"$WORK/qemu.err"
QEMU_PID=$!

qemu_alive() { # or exit with its stderr
    kill -0 "$QEMU_PID" 2>/dev/null && return 0
    # Ctrl-C reaches QEMU too; bash may then skip its own INT trap.
    if grep -qs '^qemu-system.*terminating on signal' "$WORK/qemu.err"; then
        echo "demo: interrupted: $(grep -m1 'terminating on signal' "$WORK/qemu.err")" >&2
        exit 130
    fi
    echo "QEMU exited early; its stderr:" >&2
    indent <"$WORK/qemu.err" >&2
    exit 1
}
for _ in $(seq 300); do
    [[ " $(ports)" == *" $TAP "* ]] && break
    qemu_alive
    sleep 0.1
done
[[ " $(ports)" == *" $TAP "* ]] || die "tap $TAP never became a port of $BRIDGE"
say "tap $TAP attached to $BRIDGE (network $NET) after $(since "$START") s: mtu $(link_field "$TAP" mtu) ($BRIDGE: $(link_field "$BRIDGE" mtu)), mac $(link_field "$TAP" link/ether), $BRIDGE mac still $(link_field "$BRIDGE" link/ether)"
grep '^kvmnet-ifup:' "$WORK/qemu.err" | indent || true

say "waiting up to $LEASE_TIMEOUT s for the guest's DHCP lease in $NET_DIR/leases"
IP=""
while [[ -z $IP ]]; do
    # dnsmasq's lease file: "EXPIRY MAC IP HOSTNAME CLIENT-ID" a line
    IP=$(awk -v mac="$GUEST_MAC" 'tolower($2) == mac { print $3; exit }' "$NET_DIR/leases" 2>/dev/null)
    [[ -n $IP ]] && break
    qemu_alive
    if awk -v a="$START" -v b="$EPOCHREALTIME" -v t="$LEASE_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
        echo "no lease for $GUEST_MAC within $LEASE_TIMEOUT s; the lease file:" >&2
        { [[ -s $NET_DIR/leases ]] && indent <"$NET_DIR/leases" || echo "    (empty)"; } >&2
        knet list >&2
        exit 1
    fi
    sleep 0.1
done
say "guest $GUEST_MAC got lease $IP after $(since "$START") s:"
read -r expiry mac ip host client < <(awk -v mac="$GUEST_MAC" 'tolower($2) == mac { print; exit }' "$NET_DIR/leases")
printf '    %s %s %s %s %s\n    (expires %s, hostname %s, client-id %s)\n' "$expiry" "$mac" "$ip" "$host" "$client" \
    "$(date -d "@$expiry" +%T)" "$host" "$client"
knet list | indent

say "stopping QEMU with SIGTERM (a clean exit runs downscript=kvmnet-ifdown)"
kill -TERM "$QEMU_PID"
for _ in $(seq 300); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$QEMU_PID" 2>/dev/null && die "QEMU still running 30 s after SIGTERM"
wait "$QEMU_PID" || die "QEMU exited with status $?: $(cat "$WORK/qemu.err")"
QEMU_PID=""
grep '^kvmnet-ifdown:' "$WORK/qemu.err" | indent || true
left=$(ports)
say "after QEMU exit: $BRIDGE ports: ${left:-none}"
if nsip link show dev "$TAP" >/dev/null 2>&1; then die "tap $TAP still exists"; fi
say "after QEMU exit: tap $TAP is gone, $BRIDGE mac $(link_field "$BRIDGE" link/ether)"
[[ -z $left ]] || die "$BRIDGE still has ports: $left"

say "kvmnet net down $NET"
knet down "$NET" | indent
if nsip link show dev "$BRIDGE" >/dev/null 2>&1; then die "bridge $BRIDGE still exists"; fi
for _ in $(seq 50); do alive "$DNSMASQ_PID" || break; sleep 0.1; done
alive "$DNSMASQ_PID" && die "dnsmasq $DNSMASQ_PID still runs"
[[ -e $NET_DIR ]] && die "$NET_DIR still exists"
say "after net down: bridge $BRIDGE is gone, dnsmasq $DNSMASQ_PID has exited, /run/kvmnet/net/$NET is gone"
knet list | indent
