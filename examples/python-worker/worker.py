#!/usr/bin/env python3
"""A tasker worker in Python that speaks ONLY the SQL worker protocol (docs/worker-protocol.md).

It shows that any language with a PostgreSQL driver can run tasker steps: claim, complete and fail are plain
function calls in schema tasker, one round trip each. Needs psycopg2 (Debian: python3-psycopg2).

    TASKER_DATABASE_URL=postgres://... /usr/bin/python3 worker.py --queue default

Handlers:
  echo  returns its inputs;
  fail  fails retryably on attempts 1..inputs.failTimes, then succeeds; or permanently with inputs.permanent;
  join  returns the results of its dependencies, keyed by step name.

It claims up to --batch steps at a time, runs them one after the other, LISTENs on tasker_queue to wake up at
once when work arrives, and polls every --poll seconds (retries whose backoff ended are not announced).
SIGTERM/SIGINT: finish the steps in hand, give back the claimed ones not started (tasker.release), exit 0.
Heartbeats are left out for brevity: keep handlers shorter than the visibility timeout.
"""

import argparse
import json
import os
import select
import signal
import socket
import sys

import psycopg2
import psycopg2.extensions


class Permanent(Exception):
    """An error that must not be retried."""


def echo(step):
    return step["inputs"]


def fail(step):
    inputs = step["inputs"] or {}
    message = inputs.get("message") or "failing as asked"
    if inputs.get("permanent"):
        raise Permanent(message)
    if step["attempt"] <= int(inputs.get("failTimes", 0)):
        raise RuntimeError("%s (attempt %d)" % (message, step["attempt"]))
    return {"attempt": step["attempt"]}


def join(step):
    return step["dependency_results"]


HANDLERS = {"echo": echo, "fail": fail, "join": join}

CLAIM = """
SELECT c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context, c.dependency_results,
       c.attempt, c.lease::text
FROM tasker.claim(%s::text, %s::integer, %s::integer, %s::text) AS c
"""
COMPLETE = "SELECT c.ok, c.status FROM tasker.complete(%s::uuid, %s::jsonb) AS c"
FAIL = "SELECT f.ok, f.status, f.next_attempt_at FROM tasker.fail(%s::uuid, %s::jsonb, %s::boolean, NULL) AS f"
RELEASE = "SELECT r.ok, r.status FROM tasker.release(%s::uuid) AS r"
COLUMNS = ("step_id", "task_id", "step_name", "handler", "inputs", "task_context", "dependency_results",
           "attempt", "lease")


def log(**fields):
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("TASKER_DATABASE_URL"))
    p.add_argument("--queue", default=os.environ.get("TASKER_QUEUE", "default"))
    p.add_argument("--worker-id", default=os.environ.get("TASKER_WORKER_ID") or "py-" + socket.gethostname())
    p.add_argument("--batch", type=int, default=10, help="steps claimed per round trip")
    p.add_argument("--visibility-timeout", type=int, default=30, help="seconds a claim lasts")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between claims when idle")
    args = p.parse_args()
    if not args.database_url:
        p.error("--database-url or TASKER_DATABASE_URL is required")

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    db = psycopg2.connect(args.database_url, application_name="tasker-python-worker")
    db.autocommit = True  # each protocol call is its own transaction
    listener = psycopg2.connect(args.database_url, application_name="tasker-python-worker-listen")
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener.cursor().execute("LISTEN tasker_queue")
    log(msg="worker started", worker=args.worker_id, queue=args.queue)

    cur = db.cursor()
    while not stopping:
        cur.execute(CLAIM, (args.queue, args.batch, args.visibility_timeout, args.worker_id))
        steps = [dict(zip(COLUMNS, row)) for row in cur.fetchall()]
        for i, step in enumerate(steps):
            if stopping:  # shutting down: give back what was claimed but not started
                for rest in steps[i:]:
                    cur.execute(RELEASE, (rest["lease"],))
                break
            run(cur, step, args.worker_id)
        if len(steps) < args.batch and not stopping:
            wait_for_work(listener, args.queue, args.poll)
    log(msg="worker stopped", worker=args.worker_id)
    return 0


def run(cur, step, worker_id):
    handler = HANDLERS.get(step["handler"])
    try:
        if handler is None:
            raise RuntimeError("no handler %r in the python worker" % step["handler"])
        result = handler(step)
    except Exception as e:  # report any failure; Permanent ones are not retried
        retryable = not isinstance(e, Permanent)
        cur.execute(FAIL, (step["lease"], json.dumps({"message": str(e)}), retryable))
        ok, status, next_at = cur.fetchone()
        log(msg="step failed", worker=worker_id, task=step["task_id"], step=step["step_name"],
            attempt=step["attempt"], status=status, next_attempt_at=next_at)
        return
    cur.execute(COMPLETE, (step["lease"], json.dumps(result)))
    ok, status = cur.fetchone()
    log(msg="step completed", worker=worker_id, task=step["task_id"], step=step["step_name"],
        attempt=step["attempt"], status=status)


def wait_for_work(listener, queue, timeout):
    """Returns when tasker_queue announces work for queue, or after timeout seconds."""
    try:
        ready, _, _ = select.select([listener], [], [], timeout)
    except InterruptedError:
        return
    if ready:
        listener.poll()
        listener.notifies.clear()  # any queue: claiming once more is cheap


if __name__ == "__main__":
    sys.exit(main())
