#!/usr/bin/env bash
# Load test of a team gateway: nginx in front of 1, 2 and 3 tokenbuddyd
# instances sharing one PostgreSQL ledger, clients authenticated with a
# member key, a lean mock upstream (tb-test-support's bench_mock).
#
#   bash xtask/bench/team.sh            # 10 s per run, 64 connections
#   DURATION=30 CONNS=128 bash xtask/bench/team.sh
#
# Needs PostgreSQL (TB_BENCH_PG, default postgres://postgres@127.0.0.1:5432,
# trust auth); installs nginx and wrk with apt-get when missing. Writes
# target/bench/team/report.md and prints it. For every instance count it
# runs twice: a member key without limits (no database round trip on the
# request path) and one with --rpm/--budget-usd (the shared counters).
# PostgreSQL round trips are counted as the growth of
# pg_stat_database.xact_commit + xact_rollback of the bench database
# (every statement outside a transaction is one), minus the idle rate the
# daemons cause on their own (key reloads), per request answered.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG=${TB_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
OUT=$ROOT/target/bench/team
DB=tb_bench_team_$$
BODY='{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
PIDS=()
DAEMON_PIDS=()

say() { printf '%s\n' "$*" >&2; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

need() {
    # need BINARY PACKAGE: apt-get install PACKAGE when BINARY is missing.
    if ! command -v "$1" >/dev/null && [ ! -x "/usr/sbin/$1" ]; then
        say "installing $2"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get install -y -q "$2" >/dev/null
    fi
}
need nginx nginx
need wrk wrk
need psql postgresql-client
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# PROFILE=debug measures the debug build (a quick check of the script
# itself: its figures say nothing about the daemon's speed).
PROFILE=${PROFILE:-release}
say "building the $PROFILE daemon and bench_mock (release: thin LTO settings)"
if [ "$PROFILE" = release ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    flag=--release
else
    flag=
fi
# Two builds: an --example selection would leave the daemon's binary out.
(cd "$ROOT" && cargo build $flag -q -p tokenbuddyd && cargo build $flag -q -p tb-test-support --example bench_mock)
DAEMON=$ROOT/target/$PROFILE/tokenbuddyd
MOCK=$ROOT/target/$PROFILE/examples/bench_mock

rm -rf "$OUT" && mkdir -p "$OUT"
psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
LEDGER="$PG/$DB"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_url() {
    # wait_url URL: until it answers 200, at most 30 s.
    for _ in $(seq 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    say "no answer from $1"; exit 1
}

"$MOCK" serve >"$OUT/mock.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^url: ' "$OUT/mock.out" 2>/dev/null && break; sleep 0.1; done
MOCK_URL=$(sed -n 's/^url: //p' "$OUT/mock.out" | head -1)

# Three daemons on the one ledger, each on its own loopback port.
PORTS=()
for i in 1 2 3; do
    home=$OUT/home$i
    mkdir -p "$home"
    port=$(free_port)
    PORTS+=("$port")
    cat >"$home/config.toml" <<EOF
[log]
level = "warn"
[proxy]
port = $port
[control]
port = 0
[ledger]
url = "$LEDGER"
[[providers]]
id = "mock"
kind = "openai"
base_url = "$MOCK_URL/v1"
api_key = "sk-bench"
models = ["bench-model"]
EOF
done
# Keys are created once, in the shared ledger: every instance accepts them.
key() { TB_HOME=$OUT/home1 "$DAEMON" keys create "$@" | tail -n1; }
KEY_FREE=$(key --member free)
KEY_LIMITED=$(key --member limited --rpm 100000000 --tpm 1000000000 --budget-usd 1000000)
for i in 1 2 3; do
    TB_HOME=$OUT/home$i "$DAEMON" serve >"$OUT/daemon$i.out" 2>"$OUT/daemon$i.err" &
    PIDS+=($!)
    DAEMON_PIDS+=($!)
done
for port in "${PORTS[@]}"; do wait_url "http://127.0.0.1:$port/readyz"; done

NGINX_PORT=$(free_port)
nginx_conf() {
    # nginx_conf N: a config balancing over the first N instances.
    local n=$1 servers=""
    for port in "${PORTS[@]:0:$n}"; do servers+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'; done
    mkdir -p "$OUT/nginx/logs"
    cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream tokenbuddy {
        least_conn;
$servers        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://tokenbuddy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
}

xacts() {
    psql -qtA "$PG/postgres" -c "SELECT pg_stat_force_next_flush(); SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'" | tail -1
}
calls() { psql -qtA "$LEDGER" -c "SELECT count(*) FROM calls"; }
# CPU accounting, to tell "the daemons are the limit" from "the cores are":
# machine-wide busy and total jiffies from /proc/stat, and the jiffies the
# daemons spent (utime + stime), sampled around each measured run.
machine_jiffies() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
daemon_jiffies() {
    local sum=0
    for pid in "${DAEMON_PIDS[@]}"; do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$sum"
}

# The daemons' own database traffic while idle (key reloads), per second.
sleep 11
x0=$(xacts); sleep 10; x1=$(xacts)
IDLE_PER_SEC=$(python3 -c "print(($x1 - $x0) / 10)")
say "idle database transactions per second (3 instances): $IDLE_PER_SEC"

cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TB_KEY")
wrk.body = os.getenv("TB_BODY")
EOF

ROWS=()
for n in 1 2 3; do
    nginx_conf "$n"
    "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g 'daemon off;' 2>>"$OUT/nginx/logs/stderr" &
    ngx=$!
    wait_url "http://127.0.0.1:$NGINX_PORT/livez"
    for variant in free limited; do
        if [ $variant = free ]; then k=$KEY_FREE; else k=$KEY_LIMITED; fi
        # Warm-up: connections, pools, the per-member minute row.
        TB_KEY=$k TB_BODY=$BODY wrk -t2 -c"$CONNS" -d2s -s "$OUT/post.lua" "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" >/dev/null
        sleep 11
        c0=$(calls); x0=$(xacts); t0=$(date +%s.%N)
        read -r busy0 total0 <<<"$(machine_jiffies)"; d0=$(daemon_jiffies)
        TB_KEY=$k TB_BODY=$BODY wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$OUT/post.lua" \
            "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" >"$OUT/wrk-$n-$variant.txt"
        read -r busy1 total1 <<<"$(machine_jiffies)"; d1=$(daemon_jiffies)
        # Busy share of all cores, and the daemons' CPU in cores (1.0 = one core).
        machine_busy=$(python3 -c "print(f'{100 * ($busy1 - $busy0) / max($total1 - $total0, 1):.0f} %')")
        daemon_cores=$(python3 -c "print(f'{($d1 - $d0) * $(nproc) / max($total1 - $total0, 1):.2f}')")
        # Ledger writers commit within ~50 ms; an idle PostgreSQL backend
        # publishes its statistics within 10 s.
        sleep 11
        x1=$(xacts); c1=$(calls); t1=$(date +%s.%N)
        f=$OUT/wrk-$n-$variant.txt
        reqs=$(awk '/requests in/ {print $1}' "$f")
        rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$f")
        p50=$(awk '$1=="50%" {print $2}' "$f")
        p99=$(awk '$1=="99%" {print $2}' "$f")
        bad=$(awk '/Non-2xx/ {print $NF}' "$f"); bad=${bad:-0}
        errs=$(awk '/Socket errors/ {print $0}' "$f" | sed 's/.*Socket errors: //'); errs=${errs:-none}
        per_req=$(python3 -c "print(f'{(($x1 - $x0) - $IDLE_PER_SEC * ($t1 - $t0)) / max($c1 - $c0, 1):.3f}')")
        ROWS+=("| $n | $variant | $rps | $p50 | $p99 | $bad | $errs | $((c1 - c0)) | $reqs | $per_req | $machine_busy | $daemon_cores |")
        say "instances=$n key=$variant rps=$rps p50=$p50 p99=$p99 non2xx=$bad recorded=$((c1 - c0))/$reqs pg_xacts_per_request=$per_req machine_busy=$machine_busy daemon_cores=$daemon_cores"
    done
    kill "$ngx"; wait "$ngx" 2>/dev/null || true
done

{
    echo "# Team gateway behind nginx"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "$PROFILE build; wrk -t2 -c$CONNS -d${DURATION}s through nginx ($("$NGINX" -v 2>&1 | cut -d/ -f2), least_conn, keep-alive) to N tokenbuddyd (1 event-loop thread each) on one PostgreSQL ledger; idle database transactions: $IDLE_PER_SEC/s"
    echo
    echo "| instances | member key | RPS | p50 | p99 | non-2xx | socket errors | calls recorded | requests answered | PG transactions / request | machine CPU busy | daemons' CPU (cores) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/report.md"
