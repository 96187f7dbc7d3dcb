package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// tasker.admit rejects dependency cycles itself (SQLSTATE 22023, naming a cycle) and writes nothing, so that a
// caller other than the Go engine cannot admit a task that never finishes.
func TestAdmitRejectsCycles(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	type step struct {
		Name      string   `json:"name"`
		Handler   string   `json:"handler"`
		DependsOn []string `json:"depends_on,omitempty"`
	}
	chain := make([]step, 1000) // a long acyclic chain, then the same closed into a ring below
	for i := range chain {
		chain[i] = step{Name: fmt.Sprintf("s%d", i), Handler: "h"}
		if i > 0 {
			chain[i].DependsOn = []string{fmt.Sprintf("s%d", i-1)}
		}
	}
	ring := append([]step(nil), chain...)
	ring[0] = step{Name: "s0", Handler: "h", DependsOn: []string{"s999"}}
	for _, tc := range []struct {
		name  string
		steps []step
		want  string // "" = admitted
	}{
		{"two steps", []step{{"a", "h", []string{"b"}}, {"b", "h", []string{"a"}}}, "spec.steps: dependency cycle: a -> b -> a"},
		{"cycle below a root", []step{{"r", "h", nil}, {"x", "h", []string{"r", "z"}}, {"y", "h", []string{"x"}},
			{"z", "h", []string{"y"}}, {"after", "h", []string{"z"}}}, "spec.steps: dependency cycle: x -> z -> y -> x"},
		{"diamond", []step{{"a", "h", nil}, {"b", "h", []string{"a"}}, {"c", "h", []string{"a"}},
			{"d", "h", []string{"b", "c"}}}, ""},
		{"1,000-step chain", chain, ""},
		{"1,000-step ring", ring, "spec.steps: dependency cycle: s0 -> s999 -> s998 -> s997 -> s996 -> s995 -> s994 -> s993 -> s992 -> s991 -> ... (a cycle of 1000 steps)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, _ := json.Marshal(map[string]any{"external_key": "cycle-" + tc.name, "queue": "q", "steps": tc.steps})
			_, err := pool.Exec(ctx, `SELECT tasker.admit($1::jsonb)`, doc)
			var pgErr *pgconn.PgError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want == "":
			case !errors.As(err, &pgErr) || pgErr.Code != "22023" || len(pgErr.Message) < len(tc.want) ||
				pgErr.Message[:len(tc.want)] != tc.want:
				t.Fatalf("got %v, want 22023 starting %q", err, tc.want)
			}
		})
	}
	var tasks int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.tasks`).Scan(&tasks); err != nil || tasks != 2 {
		t.Fatalf("%d tasks admitted (%v), want the 2 acyclic ones", tasks, err)
	}
}
