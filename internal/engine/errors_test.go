package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	cfg, err := store.Config("postgres://nobody@127.0.0.1:1/x?connect_timeout=1", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := engine.New(pool, engine.Options{QueryTimeout: 2 * time.Second})

	_, err = e.GetTask(context.Background(), 1)
	var dbErr *engine.DatabaseError
	if !errors.Is(err, engine.ErrUnavailable) || !errors.Is(err, engine.ErrDatabase) || !errors.As(err, &dbErr) {
		t.Fatalf("GetTask = %v, want a DatabaseError matching ErrUnavailable", err)
	}
	if errors.Unwrap(err) == nil || strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("message %q should be generic, cause kept for logs (%v)", err, errors.Unwrap(err))
	}

	// A caller's cancellation is reported as such, not as an outage.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Claim(ctx, "q", 1, time.Second, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Claim with a cancelled context = %v", err)
	}
}

func TestDatabaseErrorsAreGeneric(t *testing.T) {
	b := setup(t)
	// Break the schema under the engine: the failure surfaces as ErrDatabase, not as SQL text.
	if _, err := b.pool.Exec(b.ctx, `ALTER FUNCTION tasker.cancel_task(bigint, text) RENAME TO cancel_task_gone`); err != nil {
		t.Fatal(err)
	}
	err := b.engine.Cancel(b.ctx, 1, "")
	if !errors.Is(err, engine.ErrDatabase) || errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Cancel = %v, want ErrDatabase", err)
	}
	if strings.Contains(err.Error(), "cancel_task") || !strings.Contains(errors.Unwrap(err).Error(), "cancel_task") {
		t.Errorf("message %q / cause %q", err, errors.Unwrap(err))
	}
}

func TestCheckResult(t *testing.T) {
	for _, tc := range []struct {
		name, result, want string
	}{
		{"empty", ``, ""},
		{"object", `{"a":[1,"b"]}`, ""},
		{"escaped backslash before u0000 is text", `"\\u0000"`, ""},
		{"NUL in a string", `{"a":"x\u0000y"}`, "U+0000"},
		{"NUL in a key", `{"\u0000":1}`, "U+0000"},
		{"invalid", `{"a":`, "not valid JSON"},
		{"too large", `"` + strings.Repeat("x", engine.MaxResultSize) + `"`, "more than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := engine.CheckResult(json.RawMessage(tc.result))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckResult(%.40s) = %v, want %q", tc.result, err, tc.want)
			}
		})
	}
}
