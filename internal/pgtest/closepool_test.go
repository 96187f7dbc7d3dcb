package pgtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// errorRecorder is a testing.TB that records Errorf instead of failing the test.
type errorRecorder struct {
	testing.TB
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// A test that failed with a transaction open fails at cleanup instead of hanging the package (issue 13).
func TestClosePoolDoesNotHangOnALeakedTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := &errorRecorder{TB: t}
	closePool(rec, pool, 200*time.Millisecond) // returns although tx is never ended
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "1 connection(s) of the test's pool still checked out") {
		t.Fatalf("errors = %q", rec.errs)
	}
	_ = tx.Rollback(ctx) // lets the pool's Close (still waiting in the background) finish
}
