#!/usr/bin/env python3
"""A tasker worker in Python that speaks ONLY the SQL worker protocol (docs/worker-protocol.md).

It shows that any language with a PostgreSQL driver can run tasker steps: claim, complete and fail are plain
function calls in schema tasker, one round trip each. Needs psycopg2 (Debian: python3-psycopg2).

    TASKER_DATABASE_URL=postgres://... /usr/bin/python3 worker.py --queue default

Handlers:
  echo   returns its inputs;
  fail   fails retryably on attempts 1..inputs.failTimes, then succeeds; or permanently with inputs.permanent;
  join   returns the results of its dependencies, keyed by step name;
  sleep  waits inputs.seconds (default 1), stopping early when the step is cancelled.

It claims up to --batch steps at a time, runs them one after the other, LISTENs on tasker_queue to wake up at
once when work arrives, and polls every --poll seconds (retries whose backoff ended are not announced). The last
step in hand is reported with tasker.complete_and_claim, which hands back the steps that success made ready (the
next step of a chain) in the same transaction, so a chain runs without a claim round trip between its steps.
While a handler runs, a thread extends its lease every third of --visibility-timeout (tasker.heartbeat), so
handlers may run longer than the visibility timeout; when the heartbeat learns that the task was cancelled (or
the lease was lost), the handler is told to stop (step["stop"], a threading.Event) and nothing is reported.
SIGTERM/SIGINT: finish the steps in hand, give back the claimed ones not started (tasker.release), exit 0.

Tracing (docs/tracing.md): claims return the task's W3C trace context (trace_context, {"traceparent",
"tracestate"}). With the OpenTelemetry SDK importable (opentelemetry-sdk, configured by the OTEL_* environment
the usual way, e.g. with opentelemetry-instrument), each step attempt is a span, a child of the task's span, and
step["traceparent"] is that span's; without it, step["traceparent"] is the task's own, passed through. Either way a
handler hands step["traceparent"] (and step["tracestate"]) on to what it calls (an HTTP traceparent header, say),
so that work joins the task's trace.
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import threading
import time

import psycopg2
import psycopg2.extensions

try:  # optional: the OpenTelemetry API and SDK (pip install opentelemetry-sdk opentelemetry-exporter-otlp)
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:
    otel_trace = None


class Permanent(Exception):
    """An error that must not be retried."""


def echo(step):
    # An instance of a map step (forEach) echoes its element of the array; any other step its inputs.
    if step["item_index"] is not None:
        return step["item"]
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


def sleep(step):
    seconds = float((step["inputs"] or {}).get("seconds", 1))
    step["stop"].wait(seconds)  # returns early when the heartbeat says stop
    return {"slept": seconds}


def traceparent(step):
    """Returns the trace context the handler would hand on (to show propagation)."""
    return {"traceparent": step["traceparent"], "tracestate": step["tracestate"]}


HANDLERS = {"echo": echo, "fail": fail, "join": join, "sleep": sleep, "traceparent": traceparent}

CLAIM = """
SELECT c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context, c.dependency_results,
       c.attempt, c.lease::text, c.item, c.item_index, c.trace_context
FROM tasker.claim(%s::text, %s::integer, %s::integer, %s::text) AS c
"""
# complete_and_claim: reports the success and, with max_claims > 0, claims steps it made ready (the next step of a
# chain) in the same transaction; their rows follow the report's, with status 'claimed'.
COMPLETE = """
SELECT c.ok, c.status, c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context,
       c.dependency_results, c.attempt, c.lease::text, c.item, c.item_index, c.trace_context
FROM tasker.complete_and_claim(ARRAY[%s::uuid], ARRAY[%s::jsonb], %s::integer, %s::integer, %s::text) AS c
"""
FAIL = "SELECT f.ok, f.status, f.next_attempt_at FROM tasker.fail(%s::uuid, %s::jsonb, %s::boolean, NULL) AS f"
RELEASE = "SELECT r.ok, r.status FROM tasker.release(%s::uuid) AS r"
HEARTBEAT = "SELECT h.ok, h.cancelled FROM tasker.heartbeat(%s::uuid, %s::integer) AS h"
# item and item_index: an instance of a map step (forEach) gets its element of the array and its position (NULL for
# any other step).
COLUMNS = ("step_id", "task_id", "step_name", "handler", "inputs", "task_context", "dependency_results",
           "attempt", "lease", "item", "item_index", "trace_context")


def log(**fields):
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


class Heartbeat(threading.Thread):
    """Extends the lease of the step being run, on a connection of its own, every third of the visibility timeout;
    sets the step's "stop" event when the lease is no longer valid (task cancelled, step finished by someone else,
    or lease lost), so that the handler can give up. A failed heartbeat (database unreachable) is retried at the
    next interval: the lease still has two thirds of its time."""

    def __init__(self, url, visibility_timeout, worker_id):
        super().__init__(name="heartbeat", daemon=True)
        self.conn = psycopg2.connect(url, application_name="tasker-python-worker-heartbeat")
        self.conn.autocommit = True
        self.extend = visibility_timeout
        self.interval = visibility_timeout / 3.0
        self.worker_id = worker_id
        self.lock = threading.Lock()
        self.step = None

    def watch(self, step):
        with self.lock:
            self.step = step

    def done(self):
        with self.lock:
            self.step = None

    def run(self):
        cur = self.conn.cursor()
        while True:
            time.sleep(self.interval)
            with self.lock:
                step = self.step
            if step is None or step["stop"].is_set():
                continue
            try:
                cur.execute(HEARTBEAT, (step["lease"], self.extend))
                ok, cancelled = cur.fetchone()
            except psycopg2.Error as e:
                log(msg="heartbeat failed; retrying", worker=self.worker_id, error=str(e).strip())
                continue
            if not ok:
                log(msg="step stopped" if cancelled else "lease lost", worker=self.worker_id,
                    task=step["task_id"], step=step["step_name"], attempt=step["attempt"])
                step["stop"].set()


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
    if args.visibility_timeout < 1:
        p.error("--visibility-timeout must be at least 1 (seconds)")

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    db = psycopg2.connect(args.database_url, application_name="tasker-python-worker")
    db.autocommit = True  # each protocol call is its own transaction
    listener = psycopg2.connect(args.database_url, application_name="tasker-python-worker-listen")
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener.cursor().execute("LISTEN tasker_queue")
    heartbeat = Heartbeat(args.database_url, args.visibility_timeout, args.worker_id)
    heartbeat.start()
    log(msg="worker started", worker=args.worker_id, queue=args.queue)

    cur = db.cursor()
    while not stopping:
        cur.execute(CLAIM, (args.queue, args.batch, args.visibility_timeout, args.worker_id))
        steps = [dict(zip(COLUMNS, row)) for row in cur.fetchall()]
        i = 0
        while i < len(steps):
            step = steps[i]
            if stopping:  # shutting down: give back what was claimed but not started
                for rest in steps[i:]:
                    cur.execute(RELEASE, (rest["lease"],))
                break
            step["stop"] = threading.Event()
            heartbeat.watch(step)
            try:
                # The last step in hand may bring the next ones (its children) with its report.
                steps += run(cur, step, args.worker_id, args.batch if i == len(steps) - 1 and not stopping else 0,
                             args.visibility_timeout, args.queue)
            finally:
                heartbeat.done()
            i += 1
        if not steps and not stopping:  # wait only when the queue had nothing: only that is announced
            wait_for_work(listener, args.queue, args.poll)
    log(msg="worker stopped", worker=args.worker_id)
    return 0


def run(cur, step, worker_id, max_claims, visibility_timeout, queue):
    """Runs a step (in its span, when tracing) and reports its outcome; returns the steps its report claimed (up
    to max_claims)."""
    carrier = step["trace_context"] or {}
    step["traceparent"], step["tracestate"] = carrier.get("traceparent"), carrier.get("tracestate")
    if otel_trace is None:
        return run_step(cur, step, worker_id, max_claims, visibility_timeout)
    # The attempt's span: a child of the task's span (W3C trace context from the claim), current while the
    # handler runs, so that instrumented libraries nest their spans under it.
    parent = TraceContextTextMapPropagator().extract(carrier)
    tracer = otel_trace.get_tracer("tasker-python-worker")
    with tracer.start_as_current_span("step " + step["step_name"], context=parent,
                                      kind=otel_trace.SpanKind.CONSUMER, attributes={
                                          "tasker.task.id": step["task_id"], "tasker.step.id": step["step_id"],
                                          "tasker.step.name": step["step_name"],
                                          "tasker.step.handler": step["handler"],
                                          "tasker.step.attempt": step["attempt"], "tasker.queue": queue,
                                          "tasker.worker.id": worker_id}) as span:
        own = {}
        TraceContextTextMapPropagator().inject(own)
        step["traceparent"], step["tracestate"] = own.get("traceparent"), own.get("tracestate")
        claimed = run_step(cur, step, worker_id, max_claims, visibility_timeout)
        outcome = step.get("outcome", "unknown")
        span.set_attribute("tasker.step.outcome", outcome)
        if outcome != "succeeded":
            span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, outcome))
        return claimed


def run_step(cur, step, worker_id, max_claims, visibility_timeout):
    """Runs a step's handler and reports its outcome (step["outcome"]); returns the steps its report claimed."""
    handler = HANDLERS.get(step["handler"])
    try:
        if handler is None:
            raise RuntimeError("no handler %r in the python worker" % step["handler"])
        result = handler(step)
        if step["stop"].is_set():
            log(msg="step abandoned", worker=worker_id, task=step["task_id"], step=step["step_name"],
                attempt=step["attempt"])
            step["outcome"] = "stopped"
            return []  # the lease is no longer valid: a report would be rejected
    except Exception as e:  # report any failure; Permanent ones are not retried
        retryable = not isinstance(e, Permanent)
        cur.execute(FAIL, (step["lease"], json.dumps({"message": str(e)}), retryable))
        ok, status, next_at = cur.fetchone()
        step["outcome"] = status
        log(msg="step failed", worker=worker_id, task=step["task_id"], step=step["step_name"],
            attempt=step["attempt"], status=status, next_attempt_at=next_at)
        return []
    encoded = json.dumps(result)
    if has_nul(result):  # PostgreSQL's jsonb cannot store U+0000: fail the step with the reason instead
        cur.execute(FAIL, (step["lease"], json.dumps({"message": "the result holds the character U+0000, which "
                                                      "PostgreSQL's jsonb cannot store"}), False))
        step["outcome"] = cur.fetchone()[1]
        log(msg="step failed", worker=worker_id, task=step["task_id"], step=step["step_name"],
            attempt=step["attempt"], status=step["outcome"])
        return []
    cur.execute(COMPLETE, (step["lease"], encoded, max_claims, visibility_timeout, worker_id))
    rows = cur.fetchall()
    status = step["outcome"] = rows[0][1]
    # result_refused: the database refused the result (over tasker.max_result_bytes(), or what a child would
    # receive from its parents over its limit) and failed the step, with the reason as its error.
    log(msg="step completed" if status == "succeeded" else "step not completed", worker=worker_id,
        task=step["task_id"], step=step["step_name"], attempt=step["attempt"], status=status)
    return [dict(zip(COLUMNS, row[2:])) for row in rows[1:]]


def has_nul(value):
    """Whether a string (or key) in value holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False


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
