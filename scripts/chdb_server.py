#!/usr/bin/env python3
"""Run the chdb-core engine (ClickHouse 26.x, in-process clickhouse-local) as a loopback HTTP server.

Started by `scripts/clickhouse start`; not meant to be run by hand. Contract:
  chdb_server.py --data DIR --port PORT [--tcp-port PORT --shard N --cluster NAME --peers P1,P2,...]
- binds 127.0.0.1 only (the engine has no authentication);
- serves the ordinary ClickHouse HTTP interface until SIGTERM/SIGINT;
- on SIGTERM it kills its keep-alive query through the HTTP interface so the engine shuts down cleanly
  and flushes its parts to DATA_DIR (data also survives kill -9: parts are written on insert).

How it works: `_chdb.query()` runs a full clickhouse-local in this process. clickhouse-local understands
`SYSTEM START LISTEN HTTP`, which opens the HTTP handler configured by ./config.xml (read from the current
directory when the engine starts). A never-ending, near-idle query keeps the engine (and the listener) alive.

Like a ClickHouse server it keeps `system.query_log` (three days): the read benchmarks take each read's
server CPU time from it.

As a shard of a local cluster (`--tcp-port`): the node also listens on the native TCP port, and its
config names the cluster (`<remote_servers>`: one shard per peer TCP port, one replica each) and its
`{shard}`/`{replica}` macros, so `Distributed` tables over the cluster work. This engine has no Keeper:
no replication and no `ON CLUSTER`, so the module applies DDL node by node (see the README).
"""
import argparse
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request

KEEPALIVE_ID = "chdb-server-keepalive"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--tcp-port", type=int)
    ap.add_argument("--shard", type=int, default=1)
    ap.add_argument("--cluster", default="analytics")
    ap.add_argument("--peers", default="", help="comma-separated TCP ports of every shard, in order")
    args = ap.parse_args()

    data_dir = os.path.abspath(args.data)
    run_dir = os.path.join(data_dir, "run")
    os.makedirs(run_dir, exist_ok=True)

    # Import from a neutral directory, so a stray config.xml in the caller's cwd is not picked up.
    os.chdir("/")
    from chdb import _chdb  # noqa: E402  (import order matters, see above)

    cluster = ""
    listen = "SYSTEM START LISTEN HTTP; "
    if args.tcp_port:
        shards = "".join(
            f"<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>"
            for p in args.peers.split(",")
            if p
        )
        cluster = (
            f"<tcp_port>{args.tcp_port}</tcp_port>"
            f"<macros><shard>{args.shard}</shard><replica>replica1</replica></macros>"
            f"<remote_servers><{args.cluster}>{shards}</{args.cluster}></remote_servers>"
        )
        listen += "SYSTEM START LISTEN TCP; "
    with open(os.path.join(run_dir, "config.xml"), "w", encoding="utf-8") as f:
        f.write(
            "<clickhouse>"
            "<listen_host>127.0.0.1</listen_host>"
            f"<http_port>{args.port}</http_port>"
            f"{cluster}"
            # The query log, as a ClickHouse server keeps it by default (this engine keeps none unless
            # told): the read benchmarks take each read's server CPU time from it. Kept three days.
            "<query_log><database>system</database><table>query_log</table>"
            "<engine>ENGINE = MergeTree PARTITION BY event_date ORDER BY event_time "
            "TTL event_date + INTERVAL 3 DAY</engine></query_log>"
            "</clickhouse>\n"
        )
    os.chdir(run_dir)

    failure: list[str] = []

    def serve() -> None:
        try:
            _chdb.query(
                listen + "SELECT max(sleepEachRow(1)) FROM system.numbers "
                "SETTINGS max_block_size = 1, max_execution_time = 0",
                "TabSeparated",
                path=os.path.join(data_dir, "db"),
            )
        except Exception as e:  # the engine reports errors (port in use, ...) as exceptions
            failure.append(str(e))

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    while not stopping.is_set() and t.is_alive():
        time.sleep(0.2)

    if failure:
        print(f"chdb engine failed: {failure[0]}", file=sys.stderr, flush=True)
        return 1
    if not t.is_alive():
        print("chdb engine stopped unexpectedly", file=sys.stderr, flush=True)
        return 1

    # Clean stop: end the keep-alive query so the engine shuts down and flushes.
    sql = "KILL QUERY WHERE query LIKE '%sleepEachRow%' AND query NOT LIKE '%KILL QUERY%' SYNC"
    url = f"http://127.0.0.1:{args.port}/?" + urllib.parse.urlencode({"query": sql})
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b""), timeout=10).read()
    except Exception as e:
        print(f"could not kill keep-alive query: {e}", file=sys.stderr, flush=True)
    t.join(timeout=20)
    print("chdb engine stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
