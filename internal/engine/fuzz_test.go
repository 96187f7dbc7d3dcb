package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// documentedCodes are the SQLSTATEs docs/worker-protocol.md lists for the protocol's callers' mistakes.
var documentedCodes = map[string]bool{"22023": true, "22P02": true, "22P05": true, "54000": true}

// FuzzProtocol calls the worker protocol and the operator's SQL functions the way any client can, with arguments
// drawn from the fuzzer's bytes (NULLs, extreme integers, NaN and infinities, malformed and huge JSON, random and
// malformed leases, other queues' leases), interleaved with valid calls. Every error must carry a documented
// SQLSTATE, and the engine's invariants must hold after every call: the CHECK constraints (a violation would be an
// error), no live step in a finished task, and a message in its queue for exactly the steps that are enqueued,
// running or retrying (issue 13). `go test` runs the seeds; `make fuzz` runs it for a while.
func FuzzProtocol(f *testing.F) {
	for _, seed := range []string{
		"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a",
		"\x00\x00\x01\x00\x01\x01\x03\x02\x04\x03\x05\x04\x06\x05\x09",
		"\x0a\x02\x00\x05\x01\x07\x04\x08\x03\x06\x09\x09\x00\x00\x01\x01",
		"\x00\x03\x03\x03\x03\x03\x04\x04\x04\x05\x05\x05\x06\x06\x09\x09",
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0",
		// Valid work: claim 100 on each queue, complete, fail and release what was claimed, claim again, upkeep.
		strings.Repeat("\x00\x00\x06\x05\x01\x00\x01\x06\x05\x01\x02\x01\x00\x03\x05\x01\x01\x07\x00\x02"+
			"\x07\x01\x02\x06\x01\x03\x05\x09\x02\x01\x02", 4),
	} {
		f.Add([]byte(seed))
	}
	b := setup(f)
	b.ctx = context.Background() // setup's deadline would end a long fuzzing run; each call has its own
	f.Fuzz(func(t *testing.T, data []byte) {
		fz := &protocolFuzzer{b: b, t: t, in: data}
		defer func() { t.Logf("%d calls, %d leases seen", fz.calls, len(fz.leases)) }()
		// Every run starts with a little valid work to act on.
		fz.admit(0)
		fz.admit(1)
		for len(fz.in) > 0 && fz.calls < 64 {
			fz.step()
			fz.checkInvariants()
		}
	})
}

type protocolFuzzer struct {
	b      *testBundle
	t      *testing.T
	in     []byte
	leases []string
	calls  int
}

// next takes one byte of input (0 when it is used up).
func (fz *protocolFuzzer) next() byte {
	if len(fz.in) == 0 {
		return 0
	}
	c := fz.in[0]
	fz.in = fz.in[1:]
	return c
}

func (fz *protocolFuzzer) pick(options ...any) any { return options[int(fz.next())%len(options)] }

var fuzzQueues = []string{"fza", "fzb"}

func (fz *protocolFuzzer) queue() any {
	return fz.pick("fza", "fzb", "fza", "fzb", nil, "", "Bad Queue", strings.Repeat("q", 41), "nonexistent_queue")
}

func (fz *protocolFuzzer) integer() any {
	return fz.pick(nil, -1, 0, 1, 3, 30, 100, 1000, 1001, math.MaxInt32, math.MinInt32)
}

func (fz *protocolFuzzer) float() any {
	return fz.pick(nil, 0.0, 0.5, -1.0, 3600.0, math.NaN(), math.Inf(1), math.Inf(-1), 1e300, 1e-300)
}

func (fz *protocolFuzzer) json() any {
	return fz.pick(nil, `null`, `{}`, `"ok"`, `[1,2,3]`, `{"a":{"b":[true,false,null]}}`, `{"bad":`, `"\u0000"`,
		`{"message":"boom"}`, `{"message":"`+strings.Repeat("x", 100000)+`"}`, `12345678901234567890123456789`)
}

func (fz *protocolFuzzer) lease() any {
	if len(fz.leases) > 0 && fz.next()%4 != 0 {
		return fz.leases[int(fz.next())%len(fz.leases)]
	}
	return fz.pick(nil, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"00000000-0000-0001-0000-000000000000", "not-a-uuid", "")
}

func (fz *protocolFuzzer) someLeases() any {
	n := int(fz.next() % 4)
	out := make([]any, 0, n)
	for range n {
		out = append(out, fz.lease())
	}
	return fz.text(out)
}

// text renders values as a PostgreSQL array literal (NULL elements as NULL).
func (fz *protocolFuzzer) text(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		if v == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = `"` + strings.ReplaceAll(strings.ReplaceAll(fmt.Sprint(v), `\`, `\\`), `"`, `\"`) + `"`
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (fz *protocolFuzzer) jsons() any {
	n := int(fz.next() % 4)
	out := make([]any, 0, n)
	for range n {
		out = append(out, fz.json())
	}
	return fz.text(out)
}

func (fz *protocolFuzzer) admit(shape byte) {
	queue := fuzzQueues[int(shape)%len(fuzzQueues)]
	spec := engine.TaskSpec{Queue: queue, Steps: []engine.StepSpec{
		{Name: "a", Handler: "h", Retry: engine.RetryPolicy{MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, Jitter: engine.NoJitter}},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}, Timeout: time.Second},
		{Name: "c", Handler: "h", DependsOn: []string{"a"}, Queue: fuzzQueues[(int(shape)+1)%len(fuzzQueues)]},
		{Name: "d", Handler: "h", DependsOn: []string{"b", "c"}},
	}}
	fz.b.admit(fz.t, spec)
}

// call runs one statement and checks its error, remembering the leases it returns.
func (fz *protocolFuzzer) call(sql string, args ...any) {
	fz.t.Helper()
	fz.calls++
	ctx, cancel := context.WithTimeout(fz.b.ctx, 30*time.Second)
	defer cancel()
	rows, err := fz.b.pool.Query(ctx, sql, args...)
	if err == nil {
		for rows.Next() {
			vals, verr := rows.Values()
			if verr != nil {
				continue
			}
			for i, fd := range rows.FieldDescriptions() {
				if fd.Name == "lease" && vals[i] != nil {
					if u, ok := vals[i].([16]byte); ok {
						fz.leases = append(fz.leases, fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
					}
				}
			}
		}
		rows.Close()
		err = rows.Err()
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
	case errors.As(err, &pgErr):
		if !documentedCodes[pgErr.Code] {
			fz.t.Fatalf("%s %v: undocumented error %s: %s", sql, args, pgErr.Code, pgErr.Message)
		}
	default:
		// The driver refused to encode an argument (e.g. NaN for an integer): nothing reached the database.
		if ctx.Err() != nil {
			fz.t.Fatalf("%s %v: %v", sql, args, err)
		}
	}
}

func (fz *protocolFuzzer) step() {
	switch fz.next() % 12 {
	case 0, 1:
		fz.call(`SELECT * FROM tasker.claim($1::text, $2::integer, $3::integer, $4::text)`,
			fz.queue(), fz.integer(), fz.integer(), fz.pick(nil, "w1", "w2", strings.Repeat("w", 300)))
	case 2:
		fz.call(`SELECT * FROM tasker.complete($1::uuid, $2::jsonb)`, fz.lease(), fz.json())
	case 3:
		fz.call(`SELECT * FROM tasker.complete_many($1::uuid[], $2::jsonb[])`, fz.someLeases(), fz.jsons())
	case 4:
		fz.call(`SELECT * FROM tasker.complete_and_claim($1::uuid[], $2::jsonb[], $3::integer, $4::integer, $5::text)`,
			fz.someLeases(), fz.jsons(), fz.integer(), fz.integer(), fz.pick(nil, "w1", "w3"))
	case 5:
		fz.call(`SELECT * FROM tasker.fail($1::uuid, $2::jsonb, $3::boolean, $4::double precision)`,
			fz.lease(), fz.json(), fz.pick(nil, true, false), fz.float())
	case 6:
		fz.call(`SELECT * FROM tasker.heartbeat($1::uuid, $2::integer)`, fz.lease(), fz.integer())
	case 7:
		fz.call(`SELECT * FROM tasker.release($1::uuid)`, fz.lease())
	case 8:
		fz.call(`SELECT tasker.worker_heartbeat($1::text, $2::text[], $3::integer, $4::integer)`,
			fz.pick("w1", "w2", ""), fz.text([]any{fz.queue(), fz.queue()}), fz.integer(), fz.integer())
		fz.call(`SELECT tasker.worker_stopped($1::text)`, fz.pick(nil, "w1", "w2", "nobody"))
	case 9:
		fz.call(`SELECT * FROM tasker.upkeep($1::integer, $2::integer, 604800, 86400,
			clock_timestamp() + $3::double precision * interval '1 second')`,
			fz.pick(nil, 0, 1, 500), fz.pick(nil, 0, 30), fz.pick(nil, 0.0, 5.0, 3600.0, -3600.0))
	case 10:
		fz.admit(fz.next())
	case 11:
		fz.call(`SELECT * FROM tasker.cancel_task((SELECT max(id) FROM tasker.tasks), $1::text)`, fz.pick(nil, "fuzz"))
	}
}

// checkInvariants fails the run when a finished task has a live step, or when a step's message presence disagrees
// with its state.
func (fz *protocolFuzzer) checkInvariants() {
	fz.t.Helper()
	var live int
	if err := fz.b.pool.QueryRow(fz.b.ctx, `SELECT count(*) FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
		WHERE t.completed_at IS NOT NULL AND s.state IN ('pending', 'enqueued', 'running', 'retrying')`).Scan(&live); err != nil {
		fz.t.Fatal(err)
	}
	if live != 0 {
		fz.t.Fatalf("%d live steps in finished tasks", live)
	}
	for _, q := range fuzzQueues {
		var bad []string
		if err := fz.b.pool.QueryRow(fz.b.ctx, `SELECT coalesce(array_agg(format('step %s %s msg %s', s.id, s.state, s.msg_id)), '{}')
			FROM tasker.steps AS s
			WHERE s.queue = $1 AND (s.state IN ('enqueued', 'running', 'retrying'))
			      <> EXISTS (SELECT FROM pgmq.q_`+q+` AS m WHERE (m.message ->> 'step_id')::bigint = s.id)`, q).Scan(&bad); err != nil {
			fz.t.Fatal(err)
		}
		if len(bad) > 0 {
			fz.t.Fatalf("queue %s: steps whose message presence disagrees with their state: %v", q, bad)
		}
	}
}
