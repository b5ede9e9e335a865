"""Kafka admin for the local stack (used by deploy/local/lib.sh).

  admin.py --bootstrap HOST:PORT wait [--timeout S]
      exit 0 once the broker serves metadata with at least one broker in it.
  admin.py --bootstrap HOST:PORT create [--partitions N] TOPIC...
      create the topics (already existing ones are fine) and wait until every partition
      has a leader, so producers and consumers started next see them.
"""
import argparse
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def wait_ready(admin, timeout_s):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return True
        except KafkaException as e:
            last = e
        time.sleep(0.1)
    print(f"broker not ready after {timeout_s}s: {last}", file=sys.stderr)
    return False


def topics_ready(admin, topics, partitions):
    md = admin.list_topics(timeout=5)
    for t in topics:
        tm = md.topics.get(t)
        if tm is None or tm.error is not None or len(tm.partitions) < partitions:
            return False
        if any(p.leader < 0 for p in tm.partitions.values()):
            return False
    return True


def create(admin, topics, partitions, timeout_s):
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics],
        operation_timeout=timeout_s)
    for t, f in futures.items():
        try:
            f.result()
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                print(f"cannot create topic {t}: {e}", file=sys.stderr)
                return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if topics_ready(admin, topics, partitions):
            return True
        time.sleep(0.05)
    print(f"topics {topics} have no leaders after {timeout_s}s", file=sys.stderr)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--timeout", type=float, default=30)
    c = sub.add_parser("create")
    c.add_argument("--partitions", type=int, default=12)
    c.add_argument("--timeout", type=float, default=30)
    c.add_argument("topics", nargs="+")
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    if a.cmd == "wait":
        return 0 if wait_ready(admin, a.timeout) else 1
    return 0 if create(admin, a.topics, a.partitions, a.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
