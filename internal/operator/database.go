package operator

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// Database is the operator's connection to PostgreSQL: one pool shared by every controller, the start-up
// migration (retried until it succeeds, so a database that is down at start-up delays work instead of crashing
// the manager), and the readiness gate the controllers check.
type Database struct {
	// Name labels the database in metrics and logs: a TaskerDatabase's name, or "default" (--database-url).
	Name   string
	Pool   *pgxpool.Pool
	Engine *engine.Engine

	skipMigrations bool
	ready          atomic.Bool
	log            logr.Logger
}

// NewDatabase opens a lazy pool on url (it connects on first use, so it succeeds while the database is down).
func NewDatabase(url string, opts store.Options, engineOpts engine.Options, skipMigrations bool, log logr.Logger) (*Database, error) {
	cfg, err := store.Config(url, opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &Database{Name: "default", Pool: pool, Engine: engine.New(pool, engineOpts), skipMigrations: skipMigrations, log: log}, nil
}

// Ready implements controllers.DatabaseGate.
func (d *Database) Ready() error {
	if d.ready.Load() {
		return nil
	}
	if d.skipMigrations {
		return errors.New("waiting for the database schema (installed separately: --skip-migrations)")
	}
	return errors.New("waiting for the database: migrations have not run yet")
}

// Start migrates (unless skipped), retrying with backoff until it succeeds or ctx ends, then opens the gate. It
// runs on every replica (migrations take an advisory lock) and returns right away when done: it is a Runnable
// that does not need leader election.
func (d *Database) Start(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		err := d.prepare(ctx)
		if err == nil {
			d.ready.Store(true)
			d.log.Info("database ready", "migrationsSkipped", d.skipMigrations)
			<-ctx.Done()
			d.Pool.Close()
			return nil
		}
		d.log.Error(err, "database not ready; retrying", "in", backoff)
		select {
		case <-ctx.Done():
			d.Pool.Close()
			return nil
		case <-time.After(backoff/2 + rand.N(backoff/2)):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (d *Database) prepare(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if d.skipMigrations {
		// Check that someone else installed the schema this binary expects.
		v, err := store.Version(cctx, d.Pool)
		if err != nil {
			return err
		}
		if v < store.LatestVersion() {
			return errors.New("database schema is older than this operator; run the migrations")
		}
		return nil
	}
	return store.Migrate(cctx, d.Pool)
}

// NeedLeaderElection: every replica prepares its own pool.
func (d *Database) NeedLeaderElection() bool { return false }

// upkeep runs the engine's maintenance on the elected leader only.
type upkeep struct {
	db       *Database
	interval time.Duration
	log      logr.Logger

	failing bool // the last run failed: an outage is logged once, not at every interval
}

func (u *upkeep) NeedLeaderElection() bool { return true }

func (u *upkeep) Start(ctx context.Context) error {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		u.runOnce(ctx)
	}
}

// runOnce runs the maintenance, logs what it did and counts the run in tasker_upkeep_runs_total. While the
// database is not ready it does nothing (tasker_database_metrics_up tells that), and a run cut short by the
// manager stopping is not counted.
func (u *upkeep) runOnce(ctx context.Context) {
	if u.db.Ready() != nil {
		return
	}
	report, err := u.db.Engine.Upkeep(ctx, time.Time{})
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		upkeepRuns.WithLabelValues(u.db.Name, upkeepFailed).Inc()
		if !u.failing {
			u.log.Error(err, "upkeep failed; retrying at every interval until it succeeds", "interval", u.interval.String())
		} else {
			u.log.V(1).Info("upkeep failed again", "error", err.Error())
		}
		u.failing = true
		return
	}
	upkeepRuns.WithLabelValues(u.db.Name, upkeepSucceeded).Inc()
	if u.failing {
		u.log.Info("upkeep succeeded again")
		u.failing = false
	}
	if report != (engine.UpkeepReport{}) {
		u.log.Info("upkeep", "timedOut", report.TimedOut, "repaired", report.Repaired, "deletedTasks", report.DeletedTasks,
			"archiveDeleted", report.ArchiveDeleted, "workersDeleted", report.WorkersDeleted,
			"queuesDropped", report.QueuesDropped)
	}
}

// listener feeds the engine's task notifications and task-level changes to the Task controller, on the leader
// (where it reconciles).
type listener struct {
	db       *Database
	onTask   func(ctx context.Context, taskID int64)
	onResync func(ctx context.Context)
	// changesInterval: see DefaultChangesInterval.
	changesInterval time.Duration
}

func (l *listener) NeedLeaderElection() bool { return true }

func (l *listener) Start(ctx context.Context) error {
	for l.db.Ready() != nil { // the schema (and its NOTIFYs) must exist first
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	go l.followChanges(ctx)
	return l.db.Engine.Listen(ctx, engine.Notifications{
		OnTask:    func(id int64) { l.onTask(ctx, id) },
		OnConnect: func() { l.onResync(ctx) },
	})
}

// DefaultChangesInterval is how often the leader reads the tasks' new task-level changes (Engine.TaskChanges):
// workers do not announce a task starting or succeeding, so this bounds how late a Task's status shows it.
const DefaultChangesInterval = 250 * time.Millisecond

// followChanges feeds the task-level changes recorded by workers (task started, succeeded) to the Task
// controller, from now on, until ctx ends. A read that fails is retried at the next tick; changes a late commit
// slipped behind the cursor are caught by the controller's own paced re-reads.
func (l *listener) followChanges(ctx context.Context) {
	interval := l.changesInterval
	if interval <= 0 {
		interval = DefaultChangesInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	cursor, started := int64(0), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !started {
			c, err := l.db.Engine.LatestTaskChange(ctx)
			if err != nil {
				continue
			}
			cursor, started = c, true
			continue
		}
		for {
			ids, next, err := l.db.Engine.TaskChanges(ctx, cursor, changesBatch)
			if err != nil {
				break
			}
			for _, id := range ids {
				l.onTask(ctx, id)
			}
			full := next-cursor >= changesBatch
			cursor = next
			if !full {
				break
			}
		}
	}
}

// changesBatch bounds one read of the change feed.
const changesBatch = 1000
