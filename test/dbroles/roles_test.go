package dbroles

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// workerFunctions are the functions of schema tasker a worker role may execute: the worker protocol
// (docs/worker-protocol.md). tasker.worker_functions must list exactly these.
var workerFunctions = []string{"claim", "complete", "complete_many", "complete_and_claim", "fail", "heartbeat",
	"release", "worker_heartbeat", "worker_stopped"}

// admit admits a task (as the operator) and returns its id.
func admit(t *testing.T, in *install, key string, steps ...engine.StepSpec) int64 {
	t.Helper()
	a, err := engine.New(in.operator, engine.Options{}).Admit(ctxT(t), engine.TaskSpec{
		ExternalKey: key, Name: key, Queue: "orders", Steps: steps,
	})
	if err != nil {
		t.Fatalf("admit %s: %v", key, err)
	}
	return a.TaskID
}

type claimed struct {
	name  string
	lease string
}

// claim calls tasker.claim, the SQL contract every worker uses.
func claim(ctx context.Context, db *pgxpool.Pool, queue string) ([]claimed, error) {
	rows, err := db.Query(ctx, `SELECT c.step_name, c.lease::text
		FROM tasker.claim($1::text, $2::integer, $3::integer, $4::text) AS c`, queue, 10, 30, "test-worker")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		return c, r.Scan(&c.name, &c.lease)
	})
}

func complete(ctx context.Context, db *pgxpool.Pool, lease string) (string, error) {
	var ok bool
	var status string
	err := db.QueryRow(ctx, `SELECT c.ok, c.status FROM tasker.complete($1::uuid, $2::jsonb) AS c`,
		lease, `{"done":true}`).Scan(&ok, &status)
	return status, err
}

func taskPhases(t *testing.T, in *install, id int64) (engine.TaskPhase, map[string]engine.StepPhase) {
	t.Helper()
	st, err := engine.New(in.operator, engine.Options{}).GetTask(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]engine.StepPhase{}
	for _, s := range st.Steps {
		steps[s.Name] = s.Phase
	}
	return st.Phase, steps
}

// TestWorkerRoleWorksItsQueuesOnly: a worker role for queue orders claims and completes the steps of orders (the
// children its completions make ready included), and gets "permission denied" for everything about billing's
// steps, which stay as they were (for a billing lease, without naming the queue: the caller did not name it).
func TestWorkerRoleWorksItsQueuesOnly(t *testing.T) {
	in := setup(t)
	_, orders := in.addWorker(t, "orders", nil)
	ctx := ctxT(t)
	id := admit(t, in, "scoped",
		engine.StepSpec{Name: "pick", Handler: "echo"},
		engine.StepSpec{Name: "ship", Handler: "echo", DependsOn: []string{"pick"}},
		engine.StepSpec{Name: "invoice", Handler: "echo", Queue: "billing"},
	)

	// Its own queue: claim, complete; the child becomes ready in the same call and is claimable next.
	for _, want := range []string{"pick", "ship"} {
		got, err := claim(ctx, orders, "orders")
		if err != nil {
			t.Fatalf("claim orders as the orders worker: %v", err)
		}
		if len(got) != 1 || got[0].name != want {
			t.Fatalf("claimed %v, want [%s]", got, want)
		}
		if status, err := complete(ctx, orders, got[0].lease); err != nil || status != "succeeded" {
			t.Fatalf("complete %s: %q, %v", want, status, err)
		}
	}
	if _, err := orders.Exec(ctx, `SELECT tasker.worker_heartbeat($1::text, $2::text[], 4, 0)`, "w-orders", []string{"orders"}); err != nil {
		t.Errorf("worker_heartbeat for its own queue: %v", err)
	}
	if _, err := orders.Exec(ctx, `SELECT tasker.worker_stopped($1::text)`, "w-orders"); err != nil {
		t.Errorf("worker_stopped: %v", err)
	}

	// Another queue: claim is refused before any message is read.
	_, err := claim(ctx, orders, "billing")
	wantDenied(t, "claim billing as the orders worker", err, "permission denied for queue billing")
	_, err = orders.Exec(ctx, `SELECT tasker.worker_heartbeat($1::text, $2::text[], 4, 0)`, "w-orders", []string{"orders", "billing"})
	wantDenied(t, "worker_heartbeat naming billing", err, "permission denied for queue billing")

	// A billing step claimed by someone else: the orders worker cannot report on its lease either.
	got, err := claim(ctx, in.operator, "billing")
	if err != nil || len(got) != 1 {
		t.Fatalf("claim billing as the operator: %v %v", got, err)
	}
	lease := got[0].lease
	for what, sql := range map[string]string{
		"complete":      `SELECT * FROM tasker.complete($1::uuid)`,
		"complete_many": `SELECT * FROM tasker.complete_many(ARRAY[$1::uuid], ARRAY['{}'::jsonb])`,
		"complete_and_claim": `SELECT * FROM tasker.complete_and_claim(ARRAY[$1::uuid], ARRAY['{}'::jsonb], 10, 30,
			'w-orders')`,
		"fail":      `SELECT * FROM tasker.fail($1::uuid, '{"message":"no"}'::jsonb)`,
		"heartbeat": `SELECT * FROM tasker.heartbeat($1::uuid, 60)`,
		"release":   `SELECT * FROM tasker.release($1::uuid)`,
	} {
		_, err := orders.Exec(ctx, sql, lease)
		wantDenied(t, what+" of a billing lease as the orders worker", err, "permission denied for a lease")
		if err != nil && strings.Contains(err.Error(), "billing") {
			t.Errorf("%s of a billing lease as the orders worker names the lease's queue: %v", what, err)
		}
	}

	phase, steps := taskPhases(t, in, id)
	want := map[string]engine.StepPhase{"pick": engine.StepSucceeded, "ship": engine.StepSucceeded, "invoice": engine.StepRunning}
	if phase != engine.TaskRunning || fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("task %s %v, want running %v", phase, steps, want)
	}
	if status, err := complete(ctx, in.operator, lease); err != nil || status != "succeeded" {
		t.Errorf("the lease holder completes invoice: %q %v", status, err)
	}
	if phase, _ := taskPhases(t, in, id); phase != engine.TaskSucceeded {
		t.Errorf("task %s, want succeeded", phase)
	}
}

// TestWorkerRoleCannotTouchOtherPoolsWorkers: a worker of queue orders can neither rewrite nor delete the record
// of a worker of queue billing (those records decide which Pods a scale-in removes), even under the same id.
func TestWorkerRoleCannotTouchOtherPoolsWorkers(t *testing.T) {
	in := setup(t)
	_, orders := in.addWorker(t, "orders", nil)
	_, billing := in.addWorker(t, "billing", nil)
	ctx := ctxT(t)
	if _, err := billing.Exec(ctx, `SELECT tasker.worker_heartbeat('w-billing', ARRAY['billing'], 8, 3)`); err != nil {
		t.Fatalf("the billing worker reports itself: %v", err)
	}
	_, err := orders.Exec(ctx, `SELECT tasker.worker_heartbeat('w-billing', ARRAY['orders'], 0, 0)`)
	wantDenied(t, "the orders worker rewrites the billing worker's record", err, "permission denied for worker w-billing")
	_, err = orders.Exec(ctx, `SELECT tasker.worker_stopped('w-billing')`)
	wantDenied(t, "the orders worker deletes the billing worker's record", err, "permission denied for worker w-billing")
	if err != nil && strings.Contains(err.Error(), "billing'") {
		t.Errorf("the denial names the other worker's queue: %v", err)
	}
	var queues []string
	var slots, inFlight int
	if err := in.operator.QueryRow(ctx, `SELECT queues, slots, in_flight FROM tasker.workers WHERE id = 'w-billing'`).
		Scan(&queues, &slots, &inFlight); err != nil || !slices.Equal(queues, []string{"billing"}) || slots != 8 || inFlight != 3 {
		t.Fatalf("billing worker's record = %v %d %d, %v; want it unchanged", queues, slots, inFlight, err)
	}
	// Its own records stay its own business, and the record's owner may still stop.
	if _, err := billing.Exec(ctx, `SELECT tasker.worker_stopped('w-billing')`); err != nil {
		t.Errorf("the billing worker stops: %v", err)
	}
	if _, err := orders.Exec(ctx, `SELECT tasker.worker_heartbeat('w-billing', ARRAY['orders'], 2, 0)`); err != nil {
		t.Errorf("the orders worker reports under a free id: %v", err)
	}
}

// TestWorkerRoleCannotTouchTheSchema: a worker role holds EXECUTE on the worker functions and nothing else: no
// table, sequence or other function of tasker, nothing in tasker_internal or pgmq, no CREATE anywhere. (pgmq's
// functions keep PostgreSQL's default PUBLIC EXECUTE — the extension owns them — but without USAGE on schema pgmq
// none of them can be called.)
func TestWorkerRoleCannotTouchTheSchema(t *testing.T) {
	in := setup(t)
	role, w := in.addWorker(t, "orders", nil)
	ctx := ctxT(t)
	admit(t, in, "untouchable", engine.StepSpec{Name: "a", Handler: "echo"})

	var listed []string
	if err := in.operator.QueryRow(ctx, `SELECT array_agg(name ORDER BY name) FROM tasker.worker_functions`).Scan(&listed); err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(workerFunctions)); !slices.Equal(listed, want) {
		t.Errorf("tasker.worker_functions lists %v, want the worker protocol %v", listed, want)
	}

	// The catalogue, exhaustively.
	rows, err := in.operator.Query(ctx, `
		SELECT format('%s %s', c.oid::regclass, c.relkind), p.priv
		FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
		CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p (priv)
		WHERE n.nspname IN ('tasker', 'tasker_internal', 'pgmq') AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
		  AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege($1, c.oid, CASE p.priv WHEN 'SELECT' THEN 'SELECT' ELSE 'USAGE' END)
		           ELSE has_table_privilege($1, c.oid, p.priv) END
		UNION ALL
		SELECT format('function %s', p.oid::regprocedure), 'EXECUTE'
		FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
		WHERE n.nspname IN ('tasker', 'tasker_internal') AND has_function_privilege($1, p.oid, 'EXECUTE')
		  AND NOT (n.nspname = 'tasker' AND p.proname IN (SELECT w.name FROM tasker.worker_functions AS w))
		UNION ALL
		SELECT format('schema %s', n.nspname), p.priv
		FROM pg_namespace AS n CROSS JOIN unnest(ARRAY['USAGE', 'CREATE']) AS p (priv)
		WHERE n.nspname IN ('tasker', 'tasker_internal', 'pgmq', 'public') AND has_schema_privilege($1, n.oid, p.priv)
		  AND NOT (n.nspname IN ('tasker', 'public') AND p.priv = 'USAGE')`, role)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var what, priv string
		return what + ": " + priv, r.Scan(&what, &priv)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) > 0 {
		t.Errorf("the worker role holds privileges beyond the worker protocol:\n  %s", strings.Join(extra, "\n  "))
	}
	var executable []string
	if err := in.operator.QueryRow(ctx, `SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname), '{}')
		FROM pg_proc AS p WHERE p.pronamespace = 'tasker'::regnamespace AND has_function_privilege($1, p.oid, 'EXECUTE')`,
		role).Scan(&executable); err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(workerFunctions)); !slices.Equal(executable, want) {
		t.Errorf("the worker role may execute %v, want the worker protocol %v", executable, want)
	}

	// And in practice, with the errors a worker would see.
	for _, tc := range []struct{ sql, want string }{
		{`SELECT * FROM tasker.tasks`, "permission denied for table tasks"},
		{`SELECT * FROM tasker.steps`, "permission denied for table steps"},
		{`UPDATE tasker.steps SET state = 'succeeded'`, "permission denied for table steps"},
		{`DELETE FROM tasker.step_transitions`, "permission denied for table step_transitions"},
		{`INSERT INTO tasker.queue_grants (role_name, queue) VALUES (current_user, '*')`, "permission denied for table queue_grants"},
		{`TRUNCATE tasker.workers`, "permission denied for table workers"},
		{`SELECT * FROM tasker.admit('{}'::jsonb)`, "permission denied for function admit"},
		{`SELECT * FROM tasker.cancel_task(1)`, "permission denied for function cancel_task"},
		{`SELECT tasker.grant_worker(current_user, ARRAY['*'])`, "permission denied for function grant_worker"},
		{`SELECT * FROM tasker_internal.claim('orders', 1, 30)`, "permission denied for schema tasker_internal"},
		{`SELECT * FROM pgmq.read('orders', 30, 1)`, "permission denied for schema pgmq"},
		{`SELECT pgmq.send('orders', '{}'::jsonb)`, "permission denied for schema pgmq"},
		{`SELECT * FROM pgmq.q_orders`, "permission denied for schema pgmq"},
		{`CREATE TABLE tasker.mine (x int)`, "permission denied for schema tasker"},
		{`CREATE FUNCTION tasker.claim(queue_name text) RETURNS int LANGUAGE sql AS 'SELECT 1'`, "permission denied for schema tasker"},
		{`CREATE TABLE public.mine (x int)`, "permission denied for schema public"},
	} {
		_, err := w.Exec(ctx, tc.sql)
		wantDenied(t, tc.sql, err, tc.want)
	}
}

// TestWorkerRoleVariants: '*' grants every queue; a NOLOGIN group role passes its queues to member login roles;
// revoking takes everything back; re-running the script changes the queues.
func TestWorkerRoleVariants(t *testing.T) {
	in := setup(t)
	ctx := ctxT(t)
	admit(t, in, "variants",
		engine.StepSpec{Name: "a", Handler: "echo"},
		engine.StepSpec{Name: "b", Handler: "echo", Queue: "billing"},
		engine.StepSpec{Name: "c", Handler: "echo", Queue: "reports"},
	)

	_, all := in.addWorker(t, "*", nil)
	if got, err := claim(ctx, all, "billing"); err != nil || len(got) != 1 {
		t.Errorf("a '*' worker claims billing: %v %v", got, err)
	}

	group, _ := in.addWorker(t, "orders", map[string]string{"worker_login": "off"})
	member := uniqueRole("tasker_member")
	dropRolesAtCleanup(t, in.adminURL, member)
	admin := openPool(t, in.adminURL)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s",
		pgx.Identifier{member}.Sanitize(), pgx.Identifier{group}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	memberPool := openPool(t, withUser(t, in.adminURL, member, ""))
	if got, err := claim(ctx, memberPool, "orders"); err != nil || len(got) != 1 {
		t.Errorf("a member of the orders group role claims orders: %v %v", got, err)
	}
	_, err := claim(ctx, memberPool, "reports")
	wantDenied(t, "a member of the orders group claims reports", err, "permission denied for queue reports")

	// Re-running the script with other queues replaces them.
	psqlScript(t, in.adminURL, map[string]string{"worker_role": group, "worker_queues": "reports", "worker_login": "off"})
	if got, err := claim(ctx, memberPool, "reports"); err != nil || len(got) != 1 {
		t.Errorf("after the grant moved to reports, claim reports: %v %v", got, err)
	}
	_, err = claim(ctx, memberPool, "orders")
	wantDenied(t, "after the grant moved to reports, claim orders", err, "permission denied for queue orders")

	psqlScript(t, in.adminURL, map[string]string{"worker_role": group, "worker_revoke": "on"})
	_, err = claim(ctx, memberPool, "reports")
	wantDenied(t, "after revoking, claim", err, "permission denied for")
}

// TestGrantsScriptOrderAndIdempotence: the script run before the schema exists creates the operator's role and
// says the worker part must wait; every part can be run again.
func TestGrantsScriptOrderAndIdempotence(t *testing.T) {
	adminURL := pgtestNewDatabase(t)
	op, w := uniqueRole("tasker_operator"), uniqueRole("tasker_worker")
	dropRolesAtCleanup(t, adminURL, op, w)
	vars := map[string]string{"operator_role": op, "worker_role": w, "worker_queues": "orders"}
	out := psqlScript(t, adminURL, vars)
	if !strings.Contains(out, "not migrated yet") {
		t.Errorf("before the migration the script should say the worker part waits; output:\n%s", out)
	}
	opPool := openPool(t, withUser(t, adminURL, op, ""))
	if err := migrate(ctxT(t), opPool); err != nil {
		t.Fatal(err)
	}
	psqlScript(t, adminURL, vars)
	out = psqlScript(t, adminURL, vars)
	if !strings.Contains(out, "may work queues orders") {
		t.Errorf("second run output:\n%s", out)
	}
	delete(vars, "worker_queues")
	if out, err := runPsql(adminURL, vars); err == nil || !strings.Contains(out, "worker_queues is required") {
		t.Errorf("worker_role without worker_queues: %v\n%s", err, out)
	}
}

// TestSDKWorkerWithWorkerRole: the Go worker SDK (pkg/worker) runs a task's steps end to end on a worker role's
// credentials: everything it does (claims, batched completions, heartbeats, its tasker.workers record, LISTEN)
// fits the worker protocol grant.
func TestSDKWorkerWithWorkerRole(t *testing.T) {
	in := setup(t)
	role, _ := in.addWorker(t, "orders", nil)
	w, err := worker.Open(ctxT(t), withUser(t, in.adminURL, role, "worker-pw"), worker.Config{
		Queues: []string{"orders"}, PollInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Handle("echo", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		return json.RawMessage(`{"ok":true}`), nil
	})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	}()

	id := admit(t, in, "sdk",
		engine.StepSpec{Name: "a", Handler: "echo"},
		engine.StepSpec{Name: "b", Handler: "echo", DependsOn: []string{"a"}},
		engine.StepSpec{Name: "c", Handler: "echo", DependsOn: []string{"a"}},
		engine.StepSpec{Name: "d", Handler: "echo", DependsOn: []string{"b", "c"}},
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		phase, steps := taskPhases(t, in, id)
		if phase == engine.TaskSucceeded {
			break
		}
		if phase.Finished() || time.Now().After(deadline) {
			t.Fatalf("task %s with steps %v, want succeeded", phase, steps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWorkerRoleServerSideBounds: a worker role has a connection limit, a statement timeout and an idle-in-
// transaction timeout set by the server, so a worker that calls claim inside BEGIN and idles cannot hold the
// steps' locks for ever (issue 13).
func TestWorkerRoleServerSideBounds(t *testing.T) {
	in := setup(t)
	role, _ := in.addWorker(t, "orders", map[string]string{"worker_idle_in_transaction_timeout": "1s"})
	ctx := ctxT(t)
	// A plain connection, as a worker in another language opens it (store.Open sets its own client-side bounds).
	w, err := pgx.Connect(ctx, withUser(t, in.adminURL, role, "worker-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	var limit int
	if err := in.operator.QueryRow(ctx, `SELECT rolconnlimit FROM pg_roles WHERE rolname = $1`, role).Scan(&limit); err != nil || limit != 200 {
		t.Errorf("connection limit %d, %v; want 200", limit, err)
	}
	var stmt, idle string
	if err := w.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).
		Scan(&stmt, &idle); err != nil || stmt != "30s" || idle != "1s" {
		t.Errorf("worker session: statement_timeout %q, idle_in_transaction_session_timeout %q, %v", stmt, idle, err)
	}

	admit(t, in, "idle-in-tx", engine.StepSpec{Name: "a", Handler: "echo"})
	tx, err := w.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT * FROM tasker.claim('orders', 1, 30)`); err != nil {
		t.Fatal(err)
	}
	// The server ends the idle transaction (and its session); the next statement says so.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := tx.Exec(ctx, `SELECT 1`)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker's idle transaction was never ended by the server")
		}
		time.Sleep(1500 * time.Millisecond)
	}
}
