# deploy/local/lib.sh -- the local stack as shell functions (prefix aw_).
#
# Sourced by deploy/local/demo.sh, tests/run.sh and the pytest fixtures
# (tests/integration/stack.py calls them through `bash -c`).  Nothing runs at source time.
#
#   aw_install_deps            apt packages, the Python venv (.venv), the Kafka jars
#   aw_build DIR [ARGS...]     cmake -G Ninja + build into DIR
#   aw_run_dir_new             a fresh per-run temp dir (prints it); reaps earlier dead runs
#   aw_kafka_start RUN         single-node KRaft broker; RUN/kafka/bootstrap has host:port (PLAINTEXT),
#                              RUN/kafka/sasl_bootstrap a second listener that requires SASL
#                              (SCRAM-SHA-256; user and password in RUN/kafka/sasl.{user,password})
#   aw_redis_start RUN [--aof] [NAME]   redis-server that requires AUTH; RUN/NAME/port; the run's
#                              ACL user and password in RUN/redis.{user,password}
#   aw_redis_tls_start RUN [NAME]       redis-server on a TLS port only; RUN/NAME/tls_port
#   aw_redis_tunnel_start RUN NAME TLS_NAME [CAFILE]  stunnel (client mode) on RUN/NAME/port in
#                              front of it: what the worker (no TLS in hiredis 0.14) connects to
#   aw_simulator_start RUN BIN [ARGS...] the API simulator; RUN/simulator/{port,record.jsonl}
#   aw_worker_start RUN BIN CONFIG [NAME] a worker, waits for "worker ready"
#   aw_topics_create RUN PARTITIONS TOPIC...
#   aw_stop RUN NAME / aw_stop_all RUN   SIGTERM, wait (deadline), SIGKILL as last resort
#   aw_kafka_restart RUN / aw_redis_restart RUN [NAME]   stop and start again on the same ports
#                              and data (the chaos test)
#
# Every service lives in RUN/<name>/ (pid, port, logs, data) and is listed in RUN/services in
# start order, so aw_stop_all stops them in reverse.  A run dir records the pid of the process
# that owns it (AW_OWNER_PID, default the sourcing shell); aw_run_dir_new stops the services of
# runs whose owner has died (an interrupted earlier run) -- by pid, after checking that the
# process really belongs to that run dir -- so strays never pile up or hold memory.  Ports are
# picked free at start, so a stray can never collide with a new run either.

AW_ROOT=${AW_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
AW_CACHE_DIR=${AW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/assistant-worker}
AW_KAFKA_VERSION=3.9.1
AW_KAFKA_HOME=${AW_KAFKA_HOME:-$AW_CACHE_DIR/kafka-$AW_KAFKA_VERSION}
AW_VENV=${AW_VENV:-$AW_ROOT/.venv}
AW_RUNS_DIR=${AW_RUNS_DIR:-${TMPDIR:-/tmp}/assistant-worker-runs}
AW_KAFKA_HEAP=${AW_KAFKA_HEAP:--Xmx512m -Xms128m}
AW_START_TIMEOUT_S=${AW_START_TIMEOUT_S:-90}

AW_APT_PACKAGES=(build-essential cmake ninja-build pkg-config librdkafka-dev libcurl4-openssl-dev
  libmsgpack-dev libhiredis-dev libcmocka-dev libcjson-dev libuv1-dev libmicrohttpd-dev uthash-dev libssl-dev
  libpoppler-glib-dev zlib1g-dev
  redis-server clang libclang-rt-14-dev wrk python3-venv maven stunnel4 openssl)

aw_info() { [ "${AW_VERBOSE:-0}" = 1 ] && printf '[aw] %s\n' "$*" >&2; return 0; }
aw_err() { printf '[aw] error: %s\n' "$*" >&2; }

# aw_now_ms: wall clock in ms (for deadlines and timings).
aw_now_ms() { date +%s%3N; }

# aw_wait_until TIMEOUT_S DESCRIPTION CMD...: run CMD until it succeeds (0), the deadline
# passes or CMD returns 2 (hopeless, e.g. the process died); returns 1 in the last two
# cases.  Polls every 100 ms: a wait on a condition with a deadline, never a sleep standing
# in for synchronisation.
aw_wait_until() {
  local timeout_s=$1 what=$2; shift 2
  local deadline=$(( $(aw_now_ms) + timeout_s * 1000 )) rc
  while :; do
    "$@"; rc=$?
    [ $rc = 0 ] && return 0
    # 2 = it can never become true (the process we wait for has exited).
    if [ $rc = 2 ]; then
      aw_err "gave up waiting for $what: the process exited"
      return 1
    fi
    if [ "$(aw_now_ms)" -ge "$deadline" ]; then
      aw_err "timed out after ${timeout_s}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

# ---- installing --------------------------------------------------------------------------

# aw_install_system_deps: apt-get install whatever of AW_APT_PACKAGES (and a Java runtime)
# dpkg does not report installed.  apt-get update runs once, and only if something is missing.
aw_install_system_deps() {
  local missing=() p
  for p in "${AW_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ! command -v java >/dev/null 2>&1; then
    missing+=(default-jre-headless)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { aw_err "need root to install: ${missing[*]}"; return 1; }
    sudo="sudo -n"
  fi
  printf '[aw] installing: %s\n' "${missing[*]}" >&2
  local log="${TMPDIR:-/tmp}/assistant-worker-apt.log"
  # redis-server's postinst would start the system service; we never use it (our servers
  # run on free ports), so keep it from starting where policy-rc.d allows that.
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
     ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    aw_err "apt-get failed (full log: $log)"
    return 1
  fi
}

# aw_install_venv: the Python venv with tests/requirements.txt, reinstalled only when the
# requirements file changed (stamp = its sha256).
aw_install_venv() {
  local req="$AW_ROOT/tests/requirements.txt" stamp="$AW_VENV/.requirements.sha256" sum
  sum=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$AW_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    return 0
  fi
  printf '[aw] setting up the Python venv in %s\n' "$AW_VENV" >&2
  if [ ! -x "$AW_VENV/bin/python" ]; then
    python3 -m venv "$AW_VENV" || { aw_err "python3 -m venv failed"; return 1; }
  fi
  local log="$AW_VENV/pip.log"
  if ! "$AW_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    aw_err "pip install failed (full log: $log)"
    return 1
  fi
  echo "$sum" >"$stamp"
}

# aw_kafka_fetch: the broker's jars from Maven Central into $AW_KAFKA_HOME/libs, once
# (stamp = sha256 of the pom).  Atomic (fetch into a temp dir, then rename) and locked, so
# an interrupted or concurrent fetch never leaves a half-filled libs dir behind.
aw_kafka_fetch() {
  local pom="$AW_ROOT/deploy/local/kafka/pom.xml" sum
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  [ "$(cat "$AW_KAFKA_HOME/.pom.sha256" 2>/dev/null)" = "$sum" ] && [ -d "$AW_KAFKA_HOME/libs" ] && return 0
  mkdir -p "$AW_KAFKA_HOME"
  (
    flock 9
    [ "$(cat "$AW_KAFKA_HOME/.pom.sha256" 2>/dev/null)" = "$sum" ] && [ -d "$AW_KAFKA_HOME/libs" ] && exit 0
    printf '[aw] fetching Kafka %s from Maven Central into %s\n' "$AW_KAFKA_VERSION" "$AW_KAFKA_HOME" >&2
    local tmp="$AW_KAFKA_HOME/libs.tmp.$$" log="$AW_KAFKA_HOME/mvn.log"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
          -DoutputDirectory="$tmp" >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -rf "$tmp"
      aw_err "mvn could not fetch Kafka (full log: $log)"
      exit 1
    fi
    rm -rf "$AW_KAFKA_HOME/libs" && mv "$tmp" "$AW_KAFKA_HOME/libs" && echo "$sum" >"$AW_KAFKA_HOME/.pom.sha256"
  ) 9>"$AW_KAFKA_HOME/.lock"
}

# aw_install_deps: everything the demo and the tests need, idempotent and quick when done.
aw_install_deps() {
  aw_install_system_deps && aw_install_venv && aw_kafka_fetch
}

# ---- building ----------------------------------------------------------------------------

# aw_build DIR [CMAKE_ARGS...]: configure and build with Ninja (AW_BUILD_TOOL_ARGS go to
# ninja, e.g. "-k 0").  Output goes to DIR/aw-build.log; on failure its tail is shown.
aw_build() {
  local dir=$1; shift
  case "$dir" in /*) ;; *) dir="$AW_ROOT/$dir" ;; esac
  mkdir -p "$dir" || return 1
  local log="$dir/aw-build.log"
  # shellcheck disable=SC2086
  if ! { cmake -S "$AW_ROOT" -B "$dir" -G Ninja "$@" &&
         cmake --build "$dir" -- ${AW_BUILD_TOOL_ARGS:-}; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    aw_err "build in $dir failed (full log: $log)"
    return 1
  fi
}

# ---- run dirs and processes --------------------------------------------------------------

# aw_free_ports N: print N distinct free loopback TCP ports (held open together while
# picking, so they differ).
aw_free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# aw_pid_in_run PID RUN: true if PID is alive and belongs to RUN (its cwd or command line
# names the run dir), so a recycled pid is never signalled.
aw_pid_in_run() {
  local pid=$1 run=$2 cwd
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  case "$cwd" in "$run"|"$run"/*) return 0 ;; esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$run"
}

# aw_reap_stale_runs: stop the services of earlier runs whose owner process is gone, and
# drop their data (logs are kept for reading; runs older than 2 days go entirely).
aw_reap_stale_runs() {
  local run owner
  [ -d "$AW_RUNS_DIR" ] || return 0
  for run in "$AW_RUNS_DIR"/run-*; do
    [ -d "$run" ] || continue
    owner=$(cat "$run/owner.pid" 2>/dev/null)
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
      continue
    fi
    if [ -f "$run/services" ]; then
      aw_info "reaping stale run $run"
      aw_stop_all "$run" >/dev/null 2>&1
    fi
    rm -rf "$run/kafka/data" "$run/redis/data"
  done
  find "$AW_RUNS_DIR" -mindepth 1 -maxdepth 1 -name 'run-*' -mtime +2 -exec rm -rf {} + 2>/dev/null
  return 0
}

# aw_run_dir_new: create and print a fresh run dir, owned by AW_OWNER_PID (default: the
# shell that sourced this file).
aw_run_dir_new() {
  mkdir -p "$AW_RUNS_DIR" || return 1
  aw_reap_stale_runs
  local run
  run=$(mktemp -d "$AW_RUNS_DIR/run-$(date +%Y%m%d-%H%M%S)-XXXXXX") || return 1
  echo "${AW_OWNER_PID:-$$}" >"$run/owner.pid"
  : >"$run/services"
  echo "$run"
}

# aw_spawn RUN NAME CMD...: start CMD (absolute paths) in its own session (Ctrl-C in a
# terminal reaches the script, which then stops services in order) with cwd RUN/NAME,
# stdout+stderr to RUN/NAME/NAME.log; record the pid.  The caller waits for readiness.
aw_spawn() {
  local run=$1 name=$2; shift 2
  local dir="$run/$name" oldpwd=$PWD pid
  mkdir -p "$dir"
  # The child is forked with its cwd already in the run dir, so aw_pid_in_run recognises it
  # from its first instant.  A non-interactive shell's background job is no process-group
  # leader, so setsid execs in place and $! is the service's own pid.
  cd "$dir" || return 1
  setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 &
  pid=$!
  cd "$oldpwd" || return 1
  echo "$pid" >"$dir/pid"
  grep -qx "$name" "$run/services" 2>/dev/null || echo "$name" >>"$run/services"
  aw_info "started $name (pid $pid)"
}

# aw_alive RUN NAME: the service's process is running.
aw_alive() {
  local pid
  pid=$(cat "$1/$2/pid" 2>/dev/null) || return 1
  aw_pid_in_run "$pid" "$1"
}

# aw_stop RUN NAME [TIMEOUT_S]: SIGTERM, wait for exit up to the deadline, then SIGKILL.
# Returns 0 if it was stopped by SIGTERM (or was not running).
aw_stop() {
  local run=$1 name=$2 timeout_s=${3:-30} pid
  pid=$(cat "$run/$name/pid" 2>/dev/null) || return 0
  aw_pid_in_run "$pid" "$run" || { rm -f "$run/$name/pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  if ! AW_VERBOSE=0 aw_wait_until "$timeout_s" "$name to exit" aw_not_alive "$pid" 2>/dev/null; then
    aw_err "$name (pid $pid) ignored SIGTERM for ${timeout_s}s; killing it"
    kill -KILL "$pid" 2>/dev/null
    aw_wait_until 10 "$name to die" aw_not_alive "$pid"
    rm -f "$run/$name/pid"
    return 1
  fi
  rm -f "$run/$name/pid"
  aw_info "stopped $name"
}
aw_not_alive() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# aw_stop_all RUN: stop every service of the run, last started first.
aw_stop_all() {
  local run=$1 name rc=0
  [ -f "$run/services" ] || return 0
  for name in $(tac "$run/services"); do
    aw_stop "$run" "$name" || rc=1
  done
  return $rc
}

# aw_fail_start RUN NAME WHAT: report a service that did not come up, with its log's tail.
aw_fail_start() {
  local run=$1 name=$2
  aw_err "$name did not start ($3); last lines of its log:"
  tail -n 30 "$run/$name/$name.log" >&2 2>/dev/null
  [ -f "$run/$name/server.log" ] && tail -n 30 "$run/$name/server.log" >&2
  aw_stop "$run" "$name" 5
  return 1
}

# ---- Kafka ---------------------------------------------------------------------------------

# aw_kafka_start RUN: format and start a single-node KRaft broker (broker+controller in one
# JVM) on two free loopback ports; returns when it serves metadata.  Writes RUN/kafka/bootstrap
# (host:port) and exports AW_KAFKA_BOOTSTRAP.  About 3 s on 2 cores.
aw_kafka_start() {
  local run=$1 dir="$1/kafka" ports bport cport sport cid
  aw_kafka_fetch || return 1
  mkdir -p "$dir/data" "$dir/logs"
  read -r bport cport sport <<<"$(aw_free_ports 3)"
  sed -e "s/@BROKER_PORT@/$bport/g" -e "s/@CONTROLLER_PORT@/$cport/g" -e "s/@SASL_PORT@/$sport/g" \
    -e "s#@DATA_DIR@#$dir/data#g" \
    "$AW_ROOT/deploy/local/kafka/server.properties.in" >"$dir/server.properties"
  # The SASL listener's one user (SCRAM-SHA-256): its credential is written into the cluster's
  # metadata when the storage is formatted; the password stays in the run dir (mode 0600).
  aw_secret_new "$dir/sasl.password" || return 1
  echo aw >"$dir/sasl.user"
  # Serial GC and C1 only: on 2 cores the broker starts in ~2.5 s instead of ~3 s; the
  # tests' traffic is far too small for the JIT's top tier to matter.
  local java_opts=($AW_KAFKA_HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dlog4j.configuration="file:$AW_ROOT/deploy/local/kafka/log4j.properties")
  # A random cluster id (base64url of 16 bytes); one starting with "-" would read as an option.
  cid=$(python3 -c 'import base64,uuid
while True:
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not c.startswith("-"):
        print(c)
        break')
  if ! java "${java_opts[@]}" -Dkafka.logs.dir="$dir/format" -cp "$AW_KAFKA_HOME/libs/*" \
        kafka.tools.StorageTool format --cluster-id="$cid" --config="$dir/server.properties" \
        --add-scram "SCRAM-SHA-256=[name=aw,password=$(cat "$dir/sasl.password")]" >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" "$dir/format/server.log" >&2 2>/dev/null
    aw_err "kafka storage format failed"
    return 1
  fi
  aw_spawn "$run" kafka java "${java_opts[@]}" -Dkafka.logs.dir="$dir/logs" -cp "$AW_KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties"
  echo "127.0.0.1:$bport" >"$dir/bootstrap"
  echo "127.0.0.1:$sport" >"$dir/sasl_bootstrap"
  aw_wait_until "$AW_START_TIMEOUT_S" "the Kafka broker" aw_kafka_started "$run" ||
    { aw_fail_start "$run" kafka "no 'Kafka Server started' in logs/server.log"; return 1; }
  # The broker said it started; make sure a client sees it (and the metadata it serves).
  "$AW_VENV/bin/python" "$AW_ROOT/deploy/local/kafka/admin.py" --bootstrap "127.0.0.1:$bport" \
      wait --timeout 30 >>"$dir/kafka.log" 2>&1 ||
    { aw_fail_start "$run" kafka "no metadata from 127.0.0.1:$bport"; return 1; }
  export AW_KAFKA_BOOTSTRAP="127.0.0.1:$bport" AW_KAFKA_SASL_BOOTSTRAP="127.0.0.1:$sport"
}
aw_kafka_started() {
  aw_alive "$1" kafka || return 2
  grep -q 'Kafka Server started' "$1/kafka/logs/server.log" 2>/dev/null || return 1
}

# aw_topics_create RUN PARTITIONS TOPIC...: create topics (existing ones are fine) and wait
# until every partition has a leader.
aw_topics_create() {
  local run=$1 partitions=$2; shift 2
  "$AW_VENV/bin/python" "$AW_ROOT/deploy/local/kafka/admin.py" --bootstrap "$(cat "$run/kafka/bootstrap")" \
    create --partitions "$partitions" "$@"
}

# ---- Redis ---------------------------------------------------------------------------------

# aw_secret_new FILE: a random password (48 hex digits, no newline) in FILE, mode 0600, unless
# FILE already holds one (a restarted service keeps its credentials).
aw_secret_new() {
  [ -s "$1" ] && return 0
  ( umask 077 && openssl rand -hex 24 | tr -d '\n' >"$1.tmp" && mv "$1.tmp" "$1" ) ||
    { aw_err "cannot write $1"; return 1; }
}

# aw_redis_auth RUN: the run's Redis credentials, made once: one ACL user for every redis-server
# of the run (a restarted or second server takes the same), RUN/redis.user ("aw") and
# RUN/redis.password.  Exports what the worker reads, AW_REDIS_USERNAME and
# AW_REDIS_PASSWORD_FILE (a path: the password itself never enters the environment).
aw_redis_auth() {
  local run=$1
  aw_secret_new "$run/redis.password" || return 1
  [ -s "$run/redis.user" ] || echo aw >"$run/redis.user"
  export AW_REDIS_USERNAME=aw AW_REDIS_PASSWORD_FILE="$run/redis.password"
}

# aw_redis_aclfile RUN DIR: DIR/users.acl for redis-server --aclfile: the run's user with every
# right, its password stored as a SHA-256 (no plain text in the ACL file), the default user off.
aw_redis_aclfile() {
  local run=$1 dir=$2 sum
  sum=$(sha256sum <"$run/redis.password" | cut -d' ' -f1)
  # The default user stays on, with the same password: Redis 7.0 (Debian 12's 7.0.15) replays
  # the append-only file as the default user, and with that user off or restricted it drops
  # every MULTI/EXEC (our scripts' effects) with NOPERM at start-up -- a restart lost the
  # tool state and the outcome records (seen in the chaos test).  Without the password a
  # client still gets nothing but NOAUTH.
  ( umask 077 && printf 'user default on #%s ~* &* +@all\nuser aw on #%s ~* &* +@all\n' "$sum" "$sum" \
      >"$dir/users.acl" )
}

# aw_redis_cli RUN ARGS...: redis-cli authenticated as the run's user (the password through
# REDISCLI_AUTH, not the command line).
aw_redis_cli() {
  local run=$1; shift
  REDISCLI_AUTH="$(cat "$run/redis.password")" redis-cli --user "$(cat "$run/redis.user")" --no-auth-warning "$@"
}

# aw_redis_start RUN [--aof] [NAME]: redis-server on a free loopback port (RUN/NAME/port,
# NAME defaults to "redis") that requires AUTH as the run's ACL user (aw_redis_auth; the
# default user has the same password, see aw_redis_aclfile).  Without --aof nothing is persisted; with --aof every write is
# fsynced to an append-only file in RUN/NAME/data, so stopping and starting it again (same
# NAME: it reuses its port and data) keeps the data -- for durability tests.
aw_redis_start() {
  local run=$1; shift
  local aof=no name=redis
  while [ $# -gt 0 ]; do
    case "$1" in --aof) aof=yes ;; *) name=$1 ;; esac
    shift
  done
  local dir="$run/$name" port
  mkdir -p "$dir/data"
  aw_redis_auth "$run" && aw_redis_aclfile "$run" "$dir" || return 1
  if [ -s "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(aw_free_ports 1); fi
  echo "$port" >"$dir/port"
  aw_spawn "$run" "$name" redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/data" \
    --save '' --appendonly "$aof" --appendfsync always --daemonize no --protected-mode yes \
    --aclfile "$dir/users.acl"
  aw_wait_until 20 "redis-server ($name)" aw_redis_ping "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no PONG on port $port"; return 1; }
  [ "$name" = redis ] && export AW_REDIS_PORT=$port
  return 0
}
aw_redis_ping() {
  aw_alive "$1" "$2" || return 2
  [ "$(aw_redis_cli "$1" -h 127.0.0.1 -p "$(cat "$1/$2/port")" ping 2>/dev/null)" = PONG ] || return 1
}

# ---- Redis over TLS: a loopback stunnel in front of a TLS-only redis-server ------------------
#
# hiredis 0.14.1 (Debian 12) has no TLS, so the worker speaks plain Redis to a TLS client on
# loopback -- stunnel; in a pod, a sidecar (README.md, "Redis TLS") -- which verifies the
# server's certificate against the CA and presents a client certificate.  Here every
# certificate is made with openssl in the run dir.

# aw_tls_ca DIR: a CA (DIR/ca.key, DIR/ca.crt), once.
aw_tls_ca() {
  local dir=$1
  mkdir -p "$dir" || return 1
  [ -s "$dir/ca.crt" ] && return 0
  ( umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=aw local test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" ) >"$dir/openssl.log" 2>&1 ||
    { aw_err "openssl could not make a CA in $dir"; return 1; }
}

# aw_tls_cert DIR NAME: DIR/NAME.key and DIR/NAME.crt signed by DIR's CA, for 127.0.0.1 and
# localhost, as a server and as a client.
aw_tls_cert() {
  local dir=$1 name=$2
  [ -s "$dir/$name.crt" ] && return 0
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/$name.ext"
  ( umask 077 &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" &&
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" ) >>"$dir/openssl.log" 2>&1 ||
    { aw_err "openssl could not make the certificate $name in $dir"; return 1; }
}

# aw_redis_tls_start RUN [NAME]: redis-server (NAME defaults to "redis-tls") listening on a TLS
# port only (RUN/NAME/tls_port; no plain port), requiring AUTH as the run's user and a client
# certificate of the run's CA; certificates in RUN/NAME/tls (ca, server, client).
aw_redis_tls_start() {
  local run=$1 name=${2:-redis-tls}
  local dir="$run/$name" tls="$run/$name/tls" port
  mkdir -p "$dir/data"
  aw_redis_auth "$run" && aw_redis_aclfile "$run" "$dir" || return 1
  aw_tls_ca "$tls" && aw_tls_cert "$tls" server && aw_tls_cert "$tls" client || return 1
  if [ -s "$dir/tls_port" ]; then port=$(cat "$dir/tls_port"); else port=$(aw_free_ports 1); fi
  echo "$port" >"$dir/tls_port"
  aw_spawn "$run" "$name" redis-server --bind 127.0.0.1 --port 0 --tls-port "$port" \
    --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.crt" \
    --tls-auth-clients yes --dir "$dir/data" --save '' --appendonly no --daemonize no \
    --aclfile "$dir/users.acl"
  aw_wait_until 20 "redis-server ($name, TLS)" aw_redis_tls_ping "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no PONG over TLS on port $port"; return 1; }
}
aw_redis_tls_ping() {
  local tls="$1/$2/tls"
  aw_alive "$1" "$2" || return 2
  [ "$(aw_redis_cli "$1" --tls --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key" \
       -h 127.0.0.1 -p "$(cat "$1/$2/tls_port")" ping 2>/dev/null)" = PONG ] || return 1
}

# aw_redis_tunnel_start RUN NAME TLS_NAME [CAFILE]: stunnel in client mode on a free loopback
# port (RUN/NAME/port) forwarding to the TLS port of TLS_NAME (aw_redis_tls_start).  It verifies
# the server's certificate (its chain up to CAFILE, by default TLS_NAME's CA, and the address
# 127.0.0.1 in it) and presents TLS_NAME's client certificate.  With the default CA it returns
# once a PING through the tunnel answers; with another CAFILE once the port listens (for a test
# that expects the server to be refused).
aw_redis_tunnel_start() {
  local run=$1 name=$2 target=$3 cafile=${4:-}
  local dir="$run/$name" tls="$run/$target/tls" port tport
  command -v stunnel4 >/dev/null 2>&1 || { aw_err "stunnel4 is not installed"; return 1; }
  mkdir -p "$dir"
  tport=$(cat "$run/$target/tls_port") || return 1
  if [ -s "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(aw_free_ports 1); fi
  echo "$port" >"$dir/port"
  # verifyChain is what "verify = 2" means; checkIP adds the identity check, without which any
  # certificate the CA ever signed would pass.  foreground: logs to stderr and no pid file, so
  # aw_spawn tracks the process itself.
  cat >"$dir/stunnel.conf" <<CONF
foreground = yes
pid =
debug = notice
[redis]
client = yes
accept = 127.0.0.1:$port
connect = 127.0.0.1:$tport
verifyChain = yes
CAfile = ${cafile:-$tls/ca.crt}
checkIP = 127.0.0.1
cert = $tls/client.crt
key = $tls/client.key
CONF
  aw_spawn "$run" "$name" "$(command -v stunnel4)" "$dir/stunnel.conf"
  if [ -z "$cafile" ]; then
    aw_wait_until 20 "stunnel ($name)" aw_redis_ping "$run" "$name" ||
      { aw_fail_start "$run" "$name" "no PONG through the tunnel on port $port"; return 1; }
  else
    aw_wait_until 20 "stunnel ($name)" aw_port_listening "$run" "$name" "$port" ||
      { aw_fail_start "$run" "$name" "port $port does not listen"; return 1; }
  fi
}
aw_port_listening() {
  aw_alive "$1" "$2" || return 2
  python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$3"
}

# ---- the simulator and the worker ------------------------------------------------------------

# aw_simulator_start RUN BIN [ARGS...]: the API simulator on a free port, recording every
# exchange to RUN/simulator/record.jsonl; returns when /admin/stats answers.  Writes
# RUN/simulator/port and exports AW_API_BASE_URL.
aw_simulator_start() {
  local run=$1 bin=$2; shift 2
  local dir="$run/simulator"
  mkdir -p "$dir"
  rm -f "$dir/port"
  aw_spawn "$run" simulator "$bin" --host 127.0.0.1 --port 0 --port-file "$dir/port" \
    --record "$dir/record.jsonl" "$@"
  aw_wait_until 20 "the simulator" aw_simulator_up "$run" ||
    { aw_fail_start "$run" simulator "no answer on /admin/stats"; return 1; }
  export AW_API_BASE_URL="http://127.0.0.1:$(cat "$dir/port")/v1"
}
aw_simulator_up() {
  aw_alive "$1" simulator || return 2
  [ -s "$1/simulator/port" ] || return 1
  python3 - "$(cat "$1/simulator/port")" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1].strip()}/admin/stats", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# aw_worker_start RUN BIN CONFIG [NAME]: `BIN run --config CONFIG` (environment passed
# through: AW_* variables win over the file); returns once it logged "worker ready".
aw_worker_start() {
  local run=$1 bin=$2 config=$3 name=${4:-worker}
  aw_spawn "$run" "$name" "$bin" run --config "$config"
  aw_wait_until 60 "$name to be ready" aw_worker_ready "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no \"worker ready\" in its log"; return 1; }
}
aw_worker_ready() {
  aw_alive "$1" "$2" || return 2
  grep -q '"msg":"worker ready"' "$1/$2/$2.log" 2>/dev/null || return 1
}

# ---- restarts (the chaos test) -----------------------------------------------------------------

# aw_kafka_restart RUN: stop the broker (SIGTERM, controlled shutdown) and start it again with
# the same command line: same ports, same data dir, no format, so topics, committed offsets and
# transactions survive.  Returns once it logged "Kafka Server started" again and serves metadata.
aw_kafka_restart() {
  local run=$1 dir="$1/kafka" pid cmd=() before
  pid=$(cat "$dir/pid" 2>/dev/null) && aw_pid_in_run "$pid" "$run" ||
    { aw_err "the Kafka broker of $run is not running"; return 1; }
  # Its own command line, exactly as aw_kafka_start spawned it (NUL-separated arguments).
  mapfile -d '' -t cmd <"/proc/$pid/cmdline" || return 1
  [ ${#cmd[@]} -gt 0 ] || { aw_err "cannot read the broker's command line"; return 1; }
  before=$(grep -c 'Kafka Server started' "$dir/logs/server.log" 2>/dev/null)
  aw_stop "$run" kafka 60 || aw_err "the broker needed SIGKILL to stop"
  aw_spawn "$run" kafka "${cmd[@]}"
  aw_wait_until "$AW_START_TIMEOUT_S" "the Kafka broker to restart" aw_kafka_restarted "$run" "${before:-0}" ||
    { aw_fail_start "$run" kafka "no new 'Kafka Server started' in logs/server.log"; return 1; }
  "$AW_VENV/bin/python" "$AW_ROOT/deploy/local/kafka/admin.py" --bootstrap "$(cat "$dir/bootstrap")" \
      wait --timeout 30 >>"$dir/kafka.log" 2>&1 ||
    { aw_fail_start "$run" kafka "no metadata after the restart"; return 1; }
}
aw_kafka_restarted() {
  aw_alive "$1" kafka || return 2
  [ "$(grep -c 'Kafka Server started' "$1/kafka/logs/server.log" 2>/dev/null)" -gt "$2" ] || return 1
}

# aw_redis_restart RUN [NAME]: stop redis-server (SIGTERM: it fsyncs and exits) and start it
# again with --aof on the same port and data dir, so it reloads its append-only file.  The
# server must have been started with `aw_redis_start RUN --aof [NAME]` for its data to survive.
aw_redis_restart() {
  local run=$1 name=${2:-redis}
  [ -s "$run/$name/port" ] || { aw_err "$name of $run was never started"; return 1; }
  aw_stop "$run" "$name" 30 || aw_err "$name needed SIGKILL to stop"
  aw_redis_start "$run" --aof "$name"
}
