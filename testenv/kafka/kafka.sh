#!/usr/bin/env bash
# A real Apache Kafka for weir's tests: KRaft nodes (each a combined broker and
# controller) on free loopback ports, from the jars that pom.xml resolves from
# Maven Central. Needs Java 17+ and Maven (for the first run only: the jars are
# cached in the git-ignored lib/ folder and in ~/.m2).
#
#   kafka.sh start [--brokers 1|3] [--security sasl_ssl]
#                                    start a cluster; prints its bootstrap address
#                                    (PLAINTEXT). --security sasl_ssl adds a
#                                    SASL_SSL listener on every node: a test CA
#                                    and broker certificate made with openssl, and
#                                    SCRAM-SHA-256/512 and PLAIN user "weir" with
#                                    a random password; the folder's sasl.env then
#                                    exports WEIR_TEST_KAFKA_SASL (its bootstrap
#                                    address), WEIR_TEST_KAFKA_SASL_CA (the CA's PEM),
#                                    WEIR_TEST_KAFKA_SASL_USER and
#                                    WEIR_TEST_KAFKA_SASL_PASSWORD_FILE
#   kafka.sh stop [--keep]           stop it (SIGTERM to every node, SIGKILL after 10s)
#                                    and delete its state (--keep: leave logs and data)
#   kafka.sh status                  each node: running or stopped (exit 1 if any is stopped)
#   kafka.sh bootstrap               print the bootstrap address (host:port,...)
#   kafka.sh stop-broker N           stop node N (1-based; SIGTERM, SIGKILL after 30s),
#                                    keeping its data and ports
#   kafka.sh start-broker N          start node N again and wait until it serves
#   kafka.sh restart-broker N [--down SECONDS]
#                                    stop node N, wait SECONDS (default 0), start it
#   kafka.sh logs [N]                print the end of node N's log (default: every node's)
#   kafka.sh setup                   only resolve the jars
#
# State (properties, data, logs, pids, ports) lives in one folder: --dir DIR,
# else $WEIR_KAFKA_DIR, else ${TMPDIR:-/tmp}/weir-kafka-$UID. Several clusters
# can run at once in different folders. Everything the script says goes to
# stderr; stdout carries only what a caller captures (the bootstrap address).
#
# Settings are the ones tests want: no initial rebalance delay, replication
# factors equal to the node count (1 or 3), topics created on first use with 8
# partitions (as on weir's in-process broker), a 512 MiB heap per node
# ($KAFKA_HEAP_OPTS overrides it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib="$here/lib"
ready_timeout=${KAFKA_READY_TIMEOUT:-120}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}

say() { echo "kafka.sh: $*" >&2; }
die() { say "$*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# --- arguments -------------------------------------------------------------

cmd=${1:-}
case $cmd in ""|-h|--help|help) usage ;; esac
shift
brokers=1 keep=0 down=0 node="" security=""
dir=${WEIR_KAFKA_DIR:-${TMPDIR:-/tmp}/weir-kafka-$(id -u)}
while [ $# -gt 0 ]; do
  case $1 in
    --brokers) brokers=${2:?--brokers needs a count}; shift 2 ;;
    --brokers=*) brokers=${1#*=}; shift ;;
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --down) down=${2:?--down needs seconds}; shift 2 ;;
    --down=*) down=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    --security) security=${2:?--security needs a protocol}; shift 2 ;;
    --security=*) security=${1#*=}; shift ;;
    -h|--help) usage ;;
    [0-9]*) node=$1; shift ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done
case $brokers in 1|3) ;; *) die "--brokers must be 1 or 3, not $brokers" ;; esac
case $security in ""|sasl_ssl) ;; *) die "--security must be sasl_ssl, not $security" ;; esac

# --- jars --------------------------------------------------------------------

# setup resolves the broker's jars into lib/ unless they are there for the
# current pom.xml (lib/.pom.sha256 records which one).
setup() {
  command -v java >/dev/null || die "java is not on PATH (Kafka needs Java 17+)"
  local sum
  sum=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
  if [ -f "$lib/.pom.sha256" ] && [ "$(cat "$lib/.pom.sha256")" = "$sum" ]; then
    return
  fi
  command -v mvn >/dev/null || die "mvn is not on PATH (needed once, to fetch the Kafka jars)"
  say "resolving the Kafka jars from Maven Central into $lib"
  rm -rf "$lib"
  mkdir -p "$lib"
  if ! (cd "$here" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib) \
    >"$lib/.mvn.log" 2>&1; then
    cat "$lib/.mvn.log" >&2
    die "mvn could not resolve the Kafka jars (log: $lib/.mvn.log)"
  fi
  rm -f "$lib/.mvn.log"
  echo "$sum" >"$lib/.pom.sha256"
}

# kafka_java runs a Kafka main class in the foreground with our logging.
kafka_java() {
  java -Xmx256m -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*" "$@"
}

# --- ports and state ---------------------------------------------------------

# free_port prints a loopback port that nothing listens on and that no node of
# this cluster uses yet. It stays below the kernel's ephemeral range so that
# outgoing connections do not take it meanwhile.
free_port() {
  local p taken
  taken=" $(cat "$dir"/node-*/ports "$dir"/node-*/ports.tmp 2>/dev/null | tr '\n' ' ' || true) "
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case $taken in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "found no free loopback port"
}

nodes() { ls -d "$dir"/node-* 2>/dev/null | sed 's/.*node-//' | sort -n; }
port_of() { sed -n 1p "$dir/node-$1/ports"; }      # client (broker) port
cport_of() { sed -n 2p "$dir/node-$1/ports"; }     # controller port
sport_of() { sed -n 3p "$dir/node-$1/ports"; }     # SASL_SSL port (with --security sasl_ssl)
sasl_bootstrap() {
  local n out=""
  for n in $(nodes); do out="${out:+$out,}127.0.0.1:$(sport_of "$n")"; done
  echo "$out"
}

# make_tls writes a test CA and a broker certificate for 127.0.0.1 and
# localhost, signed by it, into $dir/sasl (PEM; the broker's key and chain in
# one file, as Kafka's PEM keystore wants), and a random password for user
# weir.
make_tls() {
  local d="$dir/sasl"
  mkdir -p "$d"
  command -v openssl >/dev/null || die "openssl is not on PATH (needed for --security sasl_ssl)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=weir test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>"$d/openssl.log" || { cat "$d/openssl.log" >&2; die "openssl: the CA"; }
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/broker.key" -out "$d/broker.csr" 2>>"$d/openssl.log" ||
    { cat "$d/openssl.log" >&2; die "openssl: the broker key"; }
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/broker.ext"
  openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/broker.ext" -out "$d/broker.pem" 2>>"$d/openssl.log" || { cat "$d/openssl.log" >&2; die "openssl: the broker certificate"; }
  # PKCS#8, unencrypted: what Kafka's PEM keystore reads
  openssl pkcs8 -topk8 -nocrypt -in "$d/broker.key" -out "$d/broker.pk8" 2>>"$d/openssl.log"
  cat "$d/broker.pk8" "$d/broker.pem" "$d/ca.pem" >"$d/keystore.pem"
  chmod 600 "$d"/*.key "$d"/*.pk8 "$d/keystore.pem"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/password"
  chmod 600 "$d/password"
}

bootstrap() {
  local n out=""
  for n in $(nodes); do out="${out:+$out,}127.0.0.1:$(port_of "$n")"; done
  echo "$out"
}

# pid_of prints node N's pid if that process is alive and is our broker.
pid_of() {
  local f="$dir/node-$1/pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "node-$1/server.properties" || return 1
  echo "$pid"
}

write_properties() {
  local n=$1 count=$2 voters="" i
  for i in $(seq "$count"); do
    voters="${voters:+$voters,}$i@127.0.0.1:$(cport_of "$i")"
  done
  local rf=$count isr=$((count > 1 ? 2 : 1))
  cat >"$dir/node-$n/server.properties" <<EOF
# written by testenv/kafka/kafka.sh for weir's tests
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(cport_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/node-$n/data
auto.create.topics.enable=true
# as on weir's in-process broker
num.partitions=8
default.replication.factor=$rf
min.insync.replicas=1
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=2
EOF
  if [ -n "$security" ]; then
    local s="$dir/sasl" pw
    pw=$(cat "$s/password")
    sed -i "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$(sport_of "$n")|; s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$(sport_of "$n")|; s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" \
      "$dir/node-$n/server.properties"
    cat >>"$dir/node-$n/server.properties" <<EOF
# --security sasl_ssl
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_weir="$pw";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$s/keystore.pem
EOF
  fi
}

# --- nodes -------------------------------------------------------------------

# launch starts node N in the background (its log: node-N/kafka.log).
launch() {
  local n=$1
  local d="$dir/node-$n"
  # Readiness is judged on what the log says after this point.
  if [ -f "$d/kafka.log" ]; then wc -c <"$d/kafka.log" >"$d/kafka.log.offset"; else echo 0 >"$d/kafka.log.offset"; fi
  # shellcheck disable=SC2086
  nohup java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$lib/*" kafka.Kafka "$d/server.properties" </dev/null >>"$d/kafka.log" 2>&1 &
  echo $! >"$d/pid"
}

# wait_ready waits until every node given is running (its log says, since this
# start, that the broker moved from RECOVERY to RUNNING and that the server
# started) and its port accepts connections.
wait_ready() {
  local deadline=$((SECONDS + ready_timeout)) n pending
  while :; do
    pending=""
    for n in "$@"; do
      local d="$dir/node-$n"
      # Right after launch the pid may still be the forked shell, not yet
      # java (pid_of matches java's command line): only a pid that is gone
      # (or a zombie) has exited.
      local lpid
      lpid=$(cat "$d/pid" 2>/dev/null || true)
      if [ -z "$lpid" ] || ! kill -0 "$lpid" 2>/dev/null ||
        grep -q '^State:.*Z' "/proc/$lpid/status" 2>/dev/null; then
        say "node $n exited while starting; the end of its log:"
        tail -n 40 "$d/kafka.log" >&2 || true
        return 1
      fi
      local said
      said=$(tail -c +"$(($(cat "$d/kafka.log.offset") + 1))" "$d/kafka.log" 2>/dev/null |
        grep -c "Transitioning from RECOVERY to RUNNING\|Kafka Server started" || true)
      if [ "${said:-0}" -ge 2 ] &&
        (exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$n")") 2>/dev/null; then
        continue
      fi
      pending="$pending $n"
    done
    [ -z "$pending" ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      say "nodes$pending not ready after ${ready_timeout}s; the end of their logs:"
      for n in $pending; do tail -n 40 "$dir/node-$n/kafka.log" >&2 || true; done
      return 1
    fi
    sleep 0.2
  done
}

# halt stops the given nodes together: SIGTERM (a controlled shutdown), then
# SIGKILL for any still running after the timeout (the last nodes of a
# cluster can wait long for a quorum that is shutting down too).
halt() {
  local n pid pids=""
  for n in "$@"; do
    if pid=$(pid_of "$n"); then
      kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
    fi
  done
  local grace=${timeout:-$stop_timeout}
  local deadline=$((SECONDS + grace)) alive
  while :; do
    alive=""
    for pid in $pids; do
      if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        alive="$alive $pid"
      fi
    done
    [ -z "$alive" ] && break
    if [ $SECONDS -ge $deadline ]; then
      say "pids$alive did not stop within ${grace}s; killing them"
      for pid in $alive; do kill -KILL "$pid" 2>/dev/null || true; done
      grace=5 deadline=$((SECONDS + 5))
      pids=$alive
      continue
    fi
    sleep 0.1
  done
  for n in "$@"; do rm -f "$dir/node-$n/pid"; done
}

require_node() {
  [ -n "$node" ] || die "$cmd needs a node number"
  [ -d "$dir/node-$node" ] || die "no node $node in $dir (nodes: $(nodes | tr '\n' ' '))"
}

# --- commands ------------------------------------------------------------------

case $cmd in
  setup)
    setup
    ;;

  start)
    setup
    if [ -n "$(nodes)" ]; then
      for n in $(nodes); do
        pid_of "$n" >/dev/null && die "a cluster already runs in $dir (stop it first, or use --dir)"
      done
      rm -rf "$dir"
    fi
    for attempt in 1 2 3; do
      mkdir -p "$dir"
      for n in $(seq "$brokers"); do
        mkdir -p "$dir/node-$n/data"
        want=2
        [ -n "$security" ] && want=3
        : >"$dir/node-$n/ports.tmp"
        # distinct ports per node (free_port skips those already taken)
        while [ "$(wc -l <"$dir/node-$n/ports.tmp")" -lt $want ]; do
          free_port >>"$dir/node-$n/ports.tmp"
        done
        mv "$dir/node-$n/ports.tmp" "$dir/node-$n/ports"
      done
      if [ -n "$security" ]; then make_tls; fi
      for n in $(seq "$brokers"); do write_properties "$n" "$brokers"; done
      cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
      [ -n "$cluster_id" ] || die "StorageTool random-uuid printed nothing"
      echo "$cluster_id" >"$dir/cluster.id"
      scram=()
      if [ -n "$security" ]; then
        pw=$(cat "$dir/sasl/password")
        scram=(--add-scram "SCRAM-SHA-512=[name=weir,password=$pw]" --add-scram "SCRAM-SHA-256=[name=weir,password=$pw]")
      fi
      for n in $(seq "$brokers"); do
        kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/node-$n/server.properties" ${scram[@]+"${scram[@]}"} \
          >"$dir/node-$n/format.log" 2>&1 || { cat "$dir/node-$n/format.log" >&2; die "formatting node $n failed"; }
      done
      for n in $(seq "$brokers"); do launch "$n"; done
      if wait_ready $(seq "$brokers"); then
        bootstrap >"$dir/bootstrap"
        if [ -n "$security" ]; then
          cat >"$dir/sasl.env" <<EOF
export WEIR_TEST_KAFKA_SASL=$(sasl_bootstrap)
export WEIR_TEST_KAFKA_SASL_CA=$dir/sasl/ca.pem
export WEIR_TEST_KAFKA_SASL_USER=weir
export WEIR_TEST_KAFKA_SASL_PASSWORD_FILE=$dir/sasl/password
EOF
          say "SASL_SSL listener(s) at $(sasl_bootstrap) (user weir; CA, password and sasl.env in $dir)"
        fi
        say "Apache Kafka ($brokers node(s), KRaft) ready at $(cat "$dir/bootstrap"); state in $dir"
        cat "$dir/bootstrap"
        exit 0
      fi
      # shellcheck disable=SC2046
      timeout=5 halt $(seq "$brokers")
      if grep -q "Address already in use" "$dir"/node-*/kafka.log 2>/dev/null && [ $attempt -lt 3 ]; then
        say "a port was taken meanwhile; trying other ports"
        rm -rf "$dir"
        continue
      fi
      die "the cluster did not start (state left in $dir)"
    done
    ;;

  stop)
    # shellcheck disable=SC2046
    timeout=${KAFKA_STOP_TIMEOUT:-10} halt $(nodes)
    if [ $keep = 0 ]; then rm -rf "$dir"; fi
    ;;

  status)
    [ -n "$(nodes)" ] || { say "no cluster in $dir"; exit 1; }
    rc=0
    for n in $(nodes); do
      if pid=$(pid_of "$n"); then
        echo "node $n: running (pid $pid) on 127.0.0.1:$(port_of "$n")" >&2
      else
        echo "node $n: stopped (port $(port_of "$n"))" >&2
        rc=1
      fi
    done
    exit $rc
    ;;

  bootstrap)
    [ -n "$(nodes)" ] || die "no cluster in $dir"
    bootstrap
    ;;

  stop-broker)
    require_node
    halt "$node"
    say "node $node stopped"
    ;;

  start-broker)
    require_node
    pid_of "$node" >/dev/null && die "node $node already runs"
    launch "$node"
    wait_ready "$node"
    say "node $node running again on 127.0.0.1:$(port_of "$node")"
    ;;

  restart-broker)
    require_node
    halt "$node"
    say "node $node stopped; starting it again in ${down}s"
    sleep "$down"
    launch "$node"
    wait_ready "$node"
    say "node $node running again on 127.0.0.1:$(port_of "$node")"
    ;;

  logs)
    for n in ${node:-$(nodes)}; do
      echo "== node $n ($dir/node-$n/kafka.log)" >&2
      tail -n 60 "$dir/node-$n/kafka.log" >&2 || true
    done
    ;;

  *)
    say "unknown command: $cmd"
    usage
    ;;
esac
