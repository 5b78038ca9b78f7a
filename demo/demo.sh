#!/usr/bin/env bash
# See kvmnet work: boot a QEMU guest whose tap is set up by kvmnet-ifup and torn
# down by kvmnet-ifdown, and watch the guest get a DHCP lease over the bridge.
#
#   sudo demo/demo.sh          (from the repository root)
#
# Everything happens in a throwaway network namespace: a bridge br0 with
# dnsmasq as DHCP server, and QEMU (TCG, no KVM needed) whose iPXE firmware asks
# for a lease. The machine's own interfaces are never touched. Whatever happens
# (failure, Ctrl-C), the namespace, the processes and the temp dir are removed.
#
# Needs: root, cargo, iproute2, qemu-system-x86 ipxe-qemu dnsmasq-base.
# Exits non-zero if the guest gets no lease within 60 s.
set -euo pipefail
export LC_ALL=C # "1.5", not "1,5", in $EPOCHREALTIME and printf
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

LEASE_TIMEOUT=60
BRIDGE=br0
BRIDGE_MAC=02:00:00:00:00:01
MTU=9000
TAP=vm0
GUEST_MAC=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
NS="kvmnet-demo-$$-$RANDOM"
WORK=""
QEMU_PID=""
DNSMASQ_PID=""

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '%s==>%s %s\n' "$B" "$N" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
# Seconds since $1 (an $EPOCHREALTIME value), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
nsip() { ip -n "$NS" "$@"; }
ports() { nsip -o link show master "$BRIDGE" | awk -F': ' '{ sub(/@.*/, "", $2); printf "%s ", $2 }'; }
link_field() { # link_field DEV FIELD: "mtu" or "link/ether" from `ip -o link show`
    nsip -o link show dev "$1" | awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -TERM "$QEMU_PID" # a clean QEMU exit runs downscript=
        for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    [[ -n $DNSMASQ_PID ]] && kill -TERM "$DNSMASQ_PID" 2>/dev/null
    if ip netns list | awk '{ print $1 }' | grep -qxF -- "$NS"; then
        for pid in $(ip netns pids "$NS"); do kill -KILL "$pid" 2>/dev/null; done
        wait 2>/dev/null
        ip netns del "$NS"
    fi
    [[ -n $WORK ]] && rm -rf -- "$WORK"
    echo "demo: cleaned up (namespace $NS deleted, no QEMU or dnsmasq left, temp dir removed)"
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
for prog in cargo ip qemu-system-x86_64 dnsmasq; do
    command -v "$prog" >/dev/null || die "$prog not found; needs cargo, iproute2 and: apt-get install qemu-system-x86 ipxe-qemu dnsmasq-base"
done
# kvmnet trusts KVMNET_CONFIG only from real root, not on behalf of a sudo user.
unset SUDO_UID SUDO_GID

say "building: cargo build --release"
cargo build --release --quiet
IFUP=$PWD/target/release/kvmnet-ifup
IFDOWN=$PWD/target/release/kvmnet-ifdown

WORK=$(mktemp -d /tmp/kvmnet-demo.XXXXXX)
printf 'bridge = "%s"\n' "$BRIDGE" >"$WORK/kvmnet.toml"
export KVMNET_CONFIG=$WORK/kvmnet.toml

say "namespace $NS: bridge $BRIDGE (mac $BRIDGE_MAC, mtu $MTU, 10.77.0.1/24)"
ip netns add "$NS"
nsip link set lo up
nsip link add "$BRIDGE" type bridge
nsip link set "$BRIDGE" address "$BRIDGE_MAC" mtu "$MTU" up
nsip addr add 10.77.0.1/24 dev "$BRIDGE"

say "dnsmasq: DHCP 10.77.0.100-199 on $BRIDGE only, no DNS"
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
    --bind-interfaces --interface="$BRIDGE" --dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h \
    --user=root --group=root --log-dhcp --log-facility="$WORK/dnsmasq.log" \
    --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/dnsmasq.pid" </dev/null 2>"$WORK/dnsmasq.err" &
DNSMASQ_PID=$!
for _ in $(seq 100); do
    grep -qs "bound exclusively to interface $BRIDGE" "$WORK/dnsmasq.log" && break
    kill -0 "$DNSMASQ_PID" 2>/dev/null || die "dnsmasq failed: $(cat "$WORK/dnsmasq.err" "$WORK/dnsmasq.log" 2>/dev/null)"
    sleep 0.1
done
grep -qs "bound exclusively to interface $BRIDGE" "$WORK/dnsmasq.log" || die "dnsmasq not ready after 10 s"

say "timing kvmnet-ifup on a pre-created tap (10 attach/detach cycles, in the namespace)"
nsip tuntap add timing0 mode tap
ip netns exec "$NS" bash -c '
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
ip netns exec "$NS" qemu-system-x86_64 -machine q35,accel=tcg -m 128 -nodefaults -no-user-config \
    -display none -serial none -monitor none -boot n \
    -netdev "tap,id=n0,ifname=$TAP,script=$IFUP,downscript=$IFDOWN" \
    -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" </dev/null >/dev/null 2>"$WORK/qemu.err" &
QEMU_PID=$!

qemu_alive() { # or exit with its stderr
    kill -0 "$QEMU_PID" 2>/dev/null && return 0
    # Ctrl-C reaches QEMU too; bash may then skip its own INT trap.
    if grep -qs '^qemu-system.*terminating on signal' "$WORK/qemu.err"; then
        echo "demo: interrupted: $(grep -m1 'terminating on signal' "$WORK/qemu.err")" >&2
        exit 130
    fi
    echo "QEMU exited early; its stderr:" >&2
    sed 's/^/    /' "$WORK/qemu.err" >&2
    exit 1
}
for _ in $(seq 300); do
    [[ " $(ports)" == *" $TAP "* ]] && break
    qemu_alive
    sleep 0.1
done
[[ " $(ports)" == *" $TAP "* ]] || die "tap $TAP never became a port of $BRIDGE"
say "tap $TAP attached to $BRIDGE after $(since "$START") s: mtu $(link_field "$TAP" mtu) ($BRIDGE: $(link_field "$BRIDGE" mtu)), mac $(link_field "$TAP" link/ether), $BRIDGE mac still $(link_field "$BRIDGE" link/ether)"
grep '^kvmnet-ifup:' "$WORK/qemu.err" | sed 's/^/    /' || true

say "waiting up to $LEASE_TIMEOUT s for the guest's DHCP lease"
IP=""
while [[ -z $IP ]]; do
    IP=$(awk -v mac="$GUEST_MAC" '/DHCPACK\(/ && tolower($NF) == mac { print $(NF - 1); exit }' \
        "$WORK/dnsmasq.log" 2>/dev/null)
    [[ -n $IP ]] && break
    qemu_alive
    if awk -v a="$START" -v b="$EPOCHREALTIME" -v t="$LEASE_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
        echo "no lease for $GUEST_MAC within $LEASE_TIMEOUT s; dnsmasq log:" >&2
        sed 's/^/    /' "$WORK/dnsmasq.log" >&2
        exit 1
    fi
    sleep 0.1
done
say "guest $GUEST_MAC got lease $IP after $(since "$START") s"
grep -E "DHCP(DISCOVER|OFFER|REQUEST|ACK)\(" "$WORK/dnsmasq.log" | sed 's/^.*\]: [0-9]* /    /'

say "stopping QEMU with SIGTERM (a clean exit runs downscript=kvmnet-ifdown)"
kill -TERM "$QEMU_PID"
for _ in $(seq 300); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$QEMU_PID" 2>/dev/null && die "QEMU still running 30 s after SIGTERM"
wait "$QEMU_PID" || die "QEMU exited with status $?: $(cat "$WORK/qemu.err")"
QEMU_PID=""
grep '^kvmnet-ifdown:' "$WORK/qemu.err" | sed 's/^/    /' || true
left=$(ports)
say "after QEMU exit: $BRIDGE ports: ${left:-none}"
if nsip link show dev "$TAP" >/dev/null 2>&1; then die "tap $TAP still exists"; fi
say "after QEMU exit: tap $TAP is gone, $BRIDGE mac $(link_field "$BRIDGE" link/ether)"
[[ -z $left ]] || die "$BRIDGE still has ports: $left"
