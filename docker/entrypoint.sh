#!/bin/sh
# learnae-entrypoint: the entrypoint of the learnae peer image (see docs/docker.md).
#
#   learnae-entrypoint learnae peer start [FLAG...]   join the compose swarm, then exec the peer
#   learnae-entrypoint health                         the container healthcheck (exit 0 = healthy)
#   learnae-entrypoint status [FLAG...]               `learnae peer status` of this container's peer
#   learnae-entrypoint data-dir                       the data dir this container's peer runs on
#   learnae-entrypoint COMMAND...                     anything else runs as is (`learnae ledger verify /data`)
#
# Compose cannot tell a container the bootstrap peer's ID (a key is made at first start, and none
# may live in the repository), nor give each replica of a service its own flags. This script fills
# both gaps from the environment, outside learnae itself:
#
#   SWARM_DIR             a named volume every peer of the swarm mounts [default /swarm]
#   SWARM_BOOTSTRAP_HOST  set on the bootstrap peer only: the host name the others reach it by.
#                         It makes sure the data dir has a key, then writes its dial address,
#                         /dns4/HOST/tcp/PORT/p2p/PEER_ID, to $SWARM_DIR/bootstrap.addr.
#                         Every other peer waits for that file (SWARM_WAIT_S, default 180 s),
#                         resolves HOST to an IPv4 address and dials it (LEARNAE_BOOTSTRAP),
#                         unless LEARNAE_BOOTSTRAP is set already.
#   SWARM_REPLICAS=R      compose.yaml's `peer` replicas: the swarm has R + 1 shards, and
#   SWARM_SLOT=0          the bootstrap peer trains on shard 0/(R+1);
#   SWARM_SLOT=auto       a replica claims the first free slot I in 1..R, an flock on
#                         $LEARNAE_HOME/peer-I/slot.lock held as long as the peer runs, and
#                         trains on shard I/(R+1) with data dir $LEARNAE_HOME/peer-I.
#   LEARNAE_STORAGE=kubo  wait (SWARM_WAIT_S) until the Kubo RPC API at LEARNAE_KUBO_API accepts
#                         connections: the peer checks it once at start and exits if it is not up.
#
# The peer's port comes from LEARNAE_LISTEN [default /ip4/0.0.0.0/tcp/4010]. A peer tells the
# others the address it listens on (its ledger `join` entry, the DHT), and 0.0.0.0 is no address
# another container can dial: with that wildcard, `learnae peer start` listens on this container's
# own IPv4 address instead (SWARM_LISTEN_WILDCARD=1 keeps the wildcard). The address survives a
# `docker network disconnect` / `connect`: Docker gives the container the same one back while no
# other container took it meanwhile.
set -eu

SWARM_DIR=${SWARM_DIR:-/swarm}
ADDR_FILE=$SWARM_DIR/bootstrap.addr
# Where `health` finds the data dir this container's peer runs on (a replica picks it at start),
# and the address it listens on: two lines.
STATE_FILE=${TMPDIR:-/tmp}/learnae-data-dir
LISTEN=${LEARNAE_LISTEN:-/ip4/0.0.0.0/tcp/4010}
PORT=${LISTEN##*/tcp/}
PORT=${PORT%%/*}

say() { echo "learnae-entrypoint: $*" >&2; }
die() { say "error: $*"; exit 2; }

data_dir() {
    dir=$(sed -n 1p "$STATE_FILE" 2>/dev/null) || dir=
    [ -n "$dir" ] || dir=${LEARNAE_HOME:-/data}
    echo "$dir"
}

health() {
    dir=$(data_dir)
    listen=$(sed -n 2p "$STATE_FILE" 2>/dev/null) || listen=
    [ -z "$listen" ] || LISTEN=$listen
    host=$(echo "$LISTEN" | cut -d/ -f3)
    PORT=${LISTEN##*/tcp/}
    PORT=${PORT%%/*}
    [ "$host" != 0.0.0.0 ] || host=127.0.0.1
    status=$(learnae peer status --data-dir "$dir" --format json) || exit 1
    # Healthy: the peer holds its data dir's lock, accepts connections on its port, and (once it
    # has written one) its latest metrics record is younger than SWARM_HEALTH_MAX_AGE_S. A record
    # older than this start (the state file's time) is a previous run's: a restarted peer that has
    # not written its first one yet is judged like a new one.
    printf '%s' "$status" | python3 -c '
import json, os, socket, sys, time
s, host, port, max_age = json.load(sys.stdin), sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    started = os.stat(sys.argv[4]).st_mtime
except OSError:
    started = 0.0
if not s["running"]:
    sys.exit("no peer is running on %s" % s["data_dir"])
try:
    socket.create_connection((host, port), timeout=2).close()
except OSError as exc:
    sys.exit("the peer does not accept connections on %s:%d: %s" % (host, port, exc))
age = time.time() - s["last_update"] if s["last_update"] and s["last_update"] >= started else 0.0
if age > max_age:
    sys.exit("the last metrics record is %.0f s old (more than %g s)" % (age, max_age))
print("step %s  accuracy %s  peers %s  merges %s" % (s["step"], s["accuracy"], s["peers"], s["merges"]))
' "$host" "$PORT" "${SWARM_HEALTH_MAX_AGE_S:-120}" "$STATE_FILE"
}

# Claim the first free slot in 1..$1; leaves the slot's lock open on fd 9 for the peer to inherit.
claim_slot() {
    i=1
    while [ "$i" -le "$1" ]; do
        mkdir -p "$DATA_ROOT/peer-$i"
        exec 9>>"$DATA_ROOT/peer-$i/slot.lock"
        if flock -n 9; then
            SLOT=$i
            return 0
        fi
        exec 9>&-
        i=$((i + 1))
    done
    return 1
}

wait_for_kubo() {
    api=${LEARNAE_KUBO_API:-/ip4/127.0.0.1/tcp/5001}
    host=$(echo "$api" | cut -d/ -f3)
    port=${api##*/tcp/}
    port=${port%%/*}
    python3 -c '
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(1)
' "$host" "$port" "${SWARM_WAIT_S:-180}" \
        || die "no Kubo RPC API answers at $api after ${SWARM_WAIT_S:-180} s; start it" \
            "(docker compose --profile kubo up -d) or set LEARNAE_STORAGE=embedded"
    say "Kubo RPC API at $api"
}

# The wildcard listen address becomes this container's own IPv4 address (see the header).
listen_on_own_address() {
    [ "$(echo "$LISTEN" | cut -d/ -f2,3)" = ip4/0.0.0.0 ] || return 0
    [ "${SWARM_LISTEN_WILDCARD:-0}" != 1 ] || return 0
    ip=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk '$1 !~ /^127\./ { print $1; exit }') || ip=
    if [ -z "$ip" ]; then
        say "no IPv4 address of $(hostname) found: listening on $LISTEN, which other peers cannot dial"
        return 0
    fi
    LISTEN="/ip4/$ip/${LISTEN#/ip4/0.0.0.0/}"
    export LEARNAE_LISTEN="$LISTEN"
    say "listening on $LISTEN"
}

publish_bootstrap_addr() {
    dir=${LEARNAE_HOME:-/data}
    mkdir -p "$dir" "$SWARM_DIR"
    [ -f "$dir/identity.key" ] || learnae key new --data-dir "$dir" >/dev/null 2>&1 \
        || die "cannot create a key in $dir"
    id=$(learnae key show --data-dir "$dir" | awk '$1 == "peer_id" { print $2 }')
    [ -n "$id" ] || die "cannot read the peer ID of $dir/identity.key"
    printf '%s\n' "/dns4/$SWARM_BOOTSTRAP_HOST/tcp/$PORT/p2p/$id" >"$ADDR_FILE.tmp.$$"
    mv "$ADDR_FILE.tmp.$$" "$ADDR_FILE"
    say "bootstrap address $(cat "$ADDR_FILE") written to $ADDR_FILE"
}

read_bootstrap_addr() {
    waited=0
    while [ ! -s "$ADDR_FILE" ]; do
        [ "$waited" -lt "${SWARM_WAIT_S:-180}" ] \
            || die "no bootstrap address in $ADDR_FILE after ${SWARM_WAIT_S:-180} s; is the bootstrap peer up?"
        sleep 1
        waited=$((waited + 1))
    done
    addr=$(cat "$ADDR_FILE")
    # /dns4/HOST/tcp/PORT/p2p/ID -> /ip4/ADDRESS/tcp/PORT/p2p/ID, resolved here by the C library
    # (Docker's DNS) so the peer never depends on how libp2p resolves names.
    host=$(echo "$addr" | cut -d/ -f3)
    ip=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }') || ip=
    if [ -n "$ip" ]; then
        addr="/ip4/$ip/${addr#/dns4/"$host"/}"
    fi
    export LEARNAE_BOOTSTRAP="$addr"
    say "bootstrap peer $addr"
}

if [ "$#" -eq 1 ] && [ "$1" = health ]; then
    health
    exit $?
fi
if [ "$#" -eq 1 ] && [ "$1" = data-dir ]; then
    data_dir
    exit 0
fi
if [ "$#" -ge 1 ] && [ "$1" = status ]; then
    shift
    exec learnae peer status --data-dir "$(data_dir)" "$@"
fi
if [ "$#" -lt 3 ] || [ "$1" != learnae ] || [ "$2" != peer ] || [ "$3" != start ]; then
    exec "$@"
fi

DATA_ROOT=${LEARNAE_HOME:-/data}
if [ -n "${SWARM_REPLICAS:-}" ]; then
    case ${SWARM_REPLICAS} in ''|*[!0-9]*) die "SWARM_REPLICAS=$SWARM_REPLICAS is not a number" ;; esac
    shards=$((SWARM_REPLICAS + 1))
    case ${SWARM_SLOT:-auto} in
        auto)
            claim_slot "$SWARM_REPLICAS" || die "no free peer slot: the $SWARM_REPLICAS slots (PEERS) are" \
                "taken; add peers with PEERS=N docker compose up -d, not --scale, so the shard count follows"
            export LEARNAE_HOME="$DATA_ROOT/peer-$SLOT" ;;
        *[!0-9]*|'') die "SWARM_SLOT=$SWARM_SLOT: expected auto or a slot number" ;;
        *) SLOT=$SWARM_SLOT ;;
    esac
    [ "$SLOT" -lt "$shards" ] || die "SWARM_SLOT=$SLOT is out of range for $shards shards"
    export LEARNAE_SHARD="$SLOT/$shards"
    say "slot $SLOT: shard $LEARNAE_SHARD, data dir ${LEARNAE_HOME:-$DATA_ROOT}"
fi
if [ -n "${SWARM_BOOTSTRAP_HOST:-}" ]; then
    publish_bootstrap_addr
elif [ -z "${LEARNAE_BOOTSTRAP:-}" ]; then
    read_bootstrap_addr
fi
if [ "${LEARNAE_STORAGE:-}" = kubo ]; then
    wait_for_kubo
fi
listen_on_own_address
printf '%s\n%s\n' "${LEARNAE_HOME:-$DATA_ROOT}" "$LISTEN" >"$STATE_FILE"
exec "$@"
