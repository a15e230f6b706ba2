#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a loopback port for the pg_dump tests, and prints
# the environment the tests read. Usage: eval "$(bash .ci/postgres.sh start DIR)"; later
# bash .ci/postgres.sh stop DIR (halt DIR and resume DIR stop and restart it, data kept). As root the server runs as the 'postgres' user (PostgreSQL
# refuses to run as root). Password authentication is on, so the secret path is exercised.
# start-tls DIR is start with TLS on: a throwaway CA (DIR/ca.crt) signs a certificate for
# localhost and 127.0.0.1, and connections are logged, so that a test can see they were encrypted.
set -euo pipefail
cmd="$1"; dir="$2"
# A free loopback port unless one is given: another server (a developer's) may hold any fixed one.
port="${DRPLAN_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$bin" ]; then echo "no PostgreSQL server under /usr/lib/postgresql; apt-get install postgresql" >&2; exit 1; fi
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start|start-tls)
    mkdir -p "$dir"
    : > "$dir/opts"
    if [ "$cmd" = start-tls ]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -days 2 -subj "/CN=drplan test CA" >"$dir/openssl.log" 2>&1
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" \
        -subj "/CN=localhost" >>"$dir/openssl.log" 2>&1
      printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > "$dir/san.ext"
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -out "$dir/server.crt" \
        -days 2 -extfile "$dir/san.ext" >>"$dir/openssl.log" 2>&1
      chmod 600 "$dir/server.key"
      if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/server.key" "$dir/server.crt"; fi
      echo "-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key -c log_connections=on" > "$dir/opts"
    fi
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    echo "drplan-ci-password" > "$dir/pw"; chmod 600 "$dir/pw"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pw"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U drplan --pwfile="$dir/pw" --auth=scram-sha-256 >"$dir/initdb.log" 2>&1
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $(cat "$dir/opts")" start >/dev/null; then
      echo "PostgreSQL did not start; its log:" >&2; cat "$dir/server.log" >&2; exit 1
    fi
    echo "$port" > "$dir/port"
    echo "export DRPLAN_PG_DSN=postgresql://drplan@127.0.0.1:$port/postgres"
    echo "export DRPLAN_PG_PASSWORD=drplan-ci-password"
    if [ "$cmd" = start-tls ]; then echo "export DRPLAN_PG_CA=$dir/ca.crt"; fi
    ;;
  halt)
    # Kills the server as a crash would (the data stays): tests of a store that dies mid-run.
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null
    ;;
  resume)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 $(cat "$dir/opts")" start >/dev/null
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
esac
