package operator

import (
	"context"
	"os"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The upkeep counts its runs by result: nothing while the database is not ready or when the manager stops during
// a run, a success once it is, a failure when PostgreSQL cannot be reached.
func TestUpkeepCountsRuns(t *testing.T) {
	db, err := NewDatabase(pgtest.NewDatabase(t), store.Options{MaxConns: 2}, engine.Options{}, false, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Pool.Close)
	u := &upkeep{db: db, log: logr.Discard()}
	ctx := context.Background()
	succeeded, failed := upkeepRuns.WithLabelValues(db.Name, upkeepSucceeded), upkeepRuns.WithLabelValues(db.Name, upkeepFailed)
	runs := func() [2]float64 { return [2]float64{testutil.ToFloat64(succeeded), testutil.ToFloat64(failed)} }
	check := func(step string, before [2]float64, want [2]float64) {
		t.Helper()
		got := runs()
		if d := [2]float64{got[0] - before[0], got[1] - before[1]}; d != want {
			t.Errorf("%s: counted %v more (succeeded, failed) runs, want %v", step, d, want)
		}
	}

	before := runs()
	u.runOnce(ctx)
	check("database not ready", before, [2]float64{0, 0})

	if err := db.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	db.ready.Store(true)
	before = runs()
	u.runOnce(ctx)
	check("migrated database", before, [2]float64{1, 0})

	stopped, stop := context.WithCancel(ctx)
	stop()
	before = runs()
	u.runOnce(stopped)
	check("manager stopping", before, [2]float64{0, 0})

	db.Pool.Close()
	before = runs()
	u.runOnce(ctx)
	check("database gone", before, [2]float64{0, 1})
	if !u.failing {
		t.Error("a failed run did not mark the upkeep failing")
	}
}
