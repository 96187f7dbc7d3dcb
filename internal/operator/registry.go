package operator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// DefaultProbeInterval is how often the --database-url database is checked (TaskerDatabases set their own).
const DefaultProbeInterval = 30 * time.Second

// Registry holds the operator's databases: the --database-url one ("default") and one per TaskerDatabase, each
// with its pool, its migration, and (on the leader, where the Registry runs) its upkeep loop, notification
// listener and probe. It tells the controllers which database a namespace uses (controllers.Bind over the cached
// Namespaces, TaskerDatabases and Tasks). A database that is down affects only the namespaces bound to it.
type Registry struct {
	client   client.Reader
	flag     *Database
	log      logr.Logger
	upkeep   time.Duration
	onTask   func(ctx context.Context, database string, taskID int64)
	onResync func(ctx context.Context, database string)

	mu      sync.Mutex
	ctx     context.Context // the leader's, once started
	managed map[string]*managed
}

type managed struct {
	name    string
	cfg     controllers.DatabaseConfig
	db      *Database
	metrics *poolmetrics.Reader
	own     bool // the registry opened the pool (not --database-url's)
	figures *dbCollector
	cancel  context.CancelFunc
	done    sync.WaitGroup

	mu    sync.Mutex
	probe controllers.DatabaseProbe
}

// NewRegistry returns a registry with flag as the "default" database (nil: none).
func NewRegistry(c client.Reader, flag *Database, upkeepInterval time.Duration, log logr.Logger) *Registry {
	r := &Registry{client: c, flag: flag, log: log, upkeep: upkeepInterval, managed: map[string]*managed{}}
	if flag != nil {
		flag.Name = taskerv1alpha1.DefaultDatabaseName
		r.managed[flag.Name] = &managed{name: flag.Name, db: flag, metrics: poolmetrics.New(flag.Pool),
			cfg: controllers.DatabaseConfig{ProbeInterval: DefaultProbeInterval}, figures: &dbCollector{db: flag}}
	}
	return r
}

// NeedLeaderElection: upkeep and listeners run on the leader only (where the controllers reconcile).
func (r *Registry) NeedLeaderElection() bool { return true }

// Start runs the databases' loops until ctx ends, then closes the pools it opened.
func (r *Registry) Start(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	for _, m := range r.managed {
		r.run(m)
	}
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	all := make([]*managed, 0, len(r.managed))
	for _, m := range r.managed {
		all = append(all, m)
	}
	r.mu.Unlock()
	for _, m := range all {
		m.stop()
	}
	return nil
}

// Ensure opens (or, when its connection changed, reopens) the database of a TaskerDatabase and starts its loops
// (at once when the registry runs, else when it starts).
func (r *Registry) Ensure(name string, cfg controllers.DatabaseConfig) error {
	if name == taskerv1alpha1.DefaultDatabaseName {
		return fmt.Errorf("the name %q is the --database-url database's", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.managed[name]; ok {
		if m.cfg.URL == cfg.URL && m.cfg.PoolSize == cfg.PoolSize && m.cfg.SkipMigrations == cfg.SkipMigrations {
			m.mu.Lock()
			m.cfg.WorkerSecret, m.cfg.ProbeInterval = cfg.WorkerSecret, cfg.ProbeInterval
			m.mu.Unlock()
			return nil
		}
		r.log.Info("database connection changed; reconnecting", "database", name)
		delete(r.managed, name)
		go m.stop()
	}
	db, err := NewDatabase(cfg.URL, store.Options{MaxConns: cfg.PoolSize, ApplicationName: "tasker-operator"},
		engine.Options{}, cfg.SkipMigrations, r.log.WithValues("database", name))
	if err != nil {
		return fmt.Errorf("the connection string is not a valid PostgreSQL URL: %w", err)
	}
	db.Name = name
	m := &managed{name: name, cfg: cfg, db: db, metrics: poolmetrics.New(db.Pool), own: true, figures: &dbCollector{db: db}}
	initUpkeepRuns(name)
	r.managed[name] = m
	if r.ctx != nil {
		r.run(m)
	}
	return nil
}

// Remove stops a TaskerDatabase's loops and closes its pool.
func (r *Registry) Remove(name string) {
	if name == taskerv1alpha1.DefaultDatabaseName {
		return
	}
	r.mu.Lock()
	m, ok := r.managed[name]
	delete(r.managed, name)
	r.mu.Unlock()
	if ok {
		r.log.Info("database removed", "database", name)
		m.stop()
	}
}

// run starts m's loops under the registry's context (r.mu held).
func (r *Registry) run(m *managed) {
	ctx, cancel := context.WithCancel(r.ctx)
	m.cancel = cancel
	log := r.log.WithValues("database", m.name)
	name := m.name
	runnables := []func(context.Context) error{
		(&upkeep{db: m.db, interval: r.upkeep, log: log.WithName("upkeep")}).Start,
		(&listener{db: m.db,
			onTask:   func(ctx context.Context, id int64) { r.taskChanged(ctx, name, id) },
			onResync: func(ctx context.Context) { r.resync(ctx, name) }}).Start,
		m.probeLoop,
	}
	if m.own {
		runnables = append(runnables, m.db.Start) // migrates, then closes the pool when ctx ends
	}
	for _, start := range runnables {
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			_ = start(ctx)
		}()
	}
}

func (m *managed) stop() {
	if m.cancel != nil {
		m.cancel()
	} else if m.own {
		m.db.Pool.Close() // never started
	}
	m.done.Wait()
}

// SetTaskCallbacks routes the databases' task notifications and reconnects to the Task controller.
func (r *Registry) SetTaskCallbacks(onTask func(ctx context.Context, database string, taskID int64),
	onResync func(ctx context.Context, database string)) {
	r.onTask, r.onResync = onTask, onResync
}

func (r *Registry) taskChanged(ctx context.Context, database string, id int64) {
	if r.onTask != nil {
		r.onTask(ctx, database, id)
	}
}

func (r *Registry) resync(ctx context.Context, database string) {
	if r.onResync != nil {
		r.onResync(ctx, database)
	}
}

// probeLoop checks the database at once and then at every probe interval.
func (m *managed) probeLoop(ctx context.Context) error {
	for {
		m.check(ctx)
		m.mu.Lock()
		interval := m.cfg.ProbeInterval
		m.mu.Unlock()
		if interval <= 0 {
			interval = DefaultProbeInterval
		}
		if !m.probeSnapshot().Up {
			interval = min(interval, 2*time.Second) // migrating or down: look again soon
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// check reads the schema version (which also tells that the database is reachable) within 5 s.
func (m *managed) check(ctx context.Context) {
	p := controllers.DatabaseProbe{At: time.Now()}
	if err := m.db.Ready(); err != nil {
		p.Message = err.Error()
	} else {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := store.Version(cctx, m.db.Pool)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.Message = "cannot reach the database (details in the operator's log)"
			m.db.log.V(1).Info("probe failed", "error", err.Error())
		case v < store.LatestVersion():
			p.SchemaVersion = v
			p.Message = fmt.Sprintf("schema version %d is older than this operator's %d", v, store.LatestVersion())
		default:
			p.SchemaVersion, p.Up = v, true
		}
	}
	m.mu.Lock()
	m.probe = p
	m.mu.Unlock()
}

func (m *managed) probeSnapshot() controllers.DatabaseProbe {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.probe
}

// Probe returns the last check of a database (false: no such database).
func (r *Registry) Probe(name string) (controllers.DatabaseProbe, bool) {
	r.mu.Lock()
	m, ok := r.managed[name]
	r.mu.Unlock()
	if !ok {
		return controllers.DatabaseProbe{}, false
	}
	return m.probeSnapshot(), true
}

// Named implements controllers.Databases.
func (r *Registry) Named(name string) (controllers.Database, error) {
	r.mu.Lock()
	m, ok := r.managed[name]
	r.mu.Unlock()
	if ok {
		m.mu.Lock()
		defer m.mu.Unlock()
		return controllers.Database{Name: name, Tasks: m.db.Engine, Limits: m.db.Engine, Metrics: m.metrics, Gate: m.db,
			WorkerSecret: m.cfg.WorkerSecret}, nil
	}
	if name != taskerv1alpha1.DefaultDatabaseName {
		var td taskerv1alpha1.TaskerDatabase
		if err := r.client.Get(context.Background(), types.NamespacedName{Name: name}, &td); err == nil && td.DeletionTimestamp.IsZero() {
			return controllers.Database{}, fmt.Errorf("database %s is being connected (see TaskerDatabase %s)", name, name)
		}
		return controllers.Database{}, fmt.Errorf("%w: TaskerDatabase %s does not exist", controllers.ErrNoDatabase, name)
	}
	return controllers.Database{}, fmt.Errorf("%w: the manager has no --database-url", controllers.ErrNoDatabase)
}

// Several implements controllers.Databases: more than one database connected, or a TaskerDatabase in the cache
// (one being connected counts).
func (r *Registry) Several() bool {
	r.mu.Lock()
	n := len(r.managed)
	r.mu.Unlock()
	if n > 1 {
		return true
	}
	var list taskerv1alpha1.TaskerDatabaseList
	if err := r.client.List(context.Background(), &list); err != nil {
		return true // cannot tell: the safe answer
	}
	return n+len(list.Items) > 1
}

// ForNamespace implements controllers.Databases.
func (r *Registry) ForNamespace(ctx context.Context, namespace string) (controllers.Database, error) {
	b, err := r.Binding(ctx, namespace)
	if err != nil {
		return controllers.Database{}, err
	}
	if b.Database == "" {
		return controllers.Database{}, fmt.Errorf("%w: %s", controllers.ErrNoDatabase, b.Problem)
	}
	return r.Named(b.Database)
}

// Binding decides a namespace's database from the cache (see controllers.Bind).
func (r *Registry) Binding(ctx context.Context, namespace string) (controllers.Binding, error) {
	var ns corev1.Namespace
	if err := r.client.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return controllers.Binding{}, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	var list taskerv1alpha1.TaskerDatabaseList
	if err := r.client.List(ctx, &list); err != nil {
		return controllers.Binding{}, fmt.Errorf("listing TaskerDatabases: %w", err)
	}
	return r.bind(ctx, &ns, list.Items)
}

// bind is Binding with the Namespace and the TaskerDatabases read.
func (r *Registry) bind(ctx context.Context, ns *corev1.Namespace, all []taskerv1alpha1.TaskerDatabase) (controllers.Binding, error) {
	live := make([]taskerv1alpha1.TaskerDatabase, 0, len(all))
	names := make([]string, 0, len(all)+1)
	for i := range all {
		if all[i].DeletionTimestamp.IsZero() {
			live = append(live, all[i])
		}
		names = append(names, all[i].Name)
	}
	if r.flag != nil {
		names = append(names, taskerv1alpha1.DefaultDatabaseName)
	}
	unfinished := map[string]int{}
	for _, name := range names {
		n, err := controllers.UnfinishedTasks(ctx, r.client, ns.Name, name)
		if err != nil {
			return controllers.Binding{}, err
		}
		unfinished[name] = n
	}
	return controllers.Bind(ns, live, r.flag != nil, unfinished), nil
}

var (
	_ controllers.Databases        = (*Registry)(nil)
	_ controllers.DatabaseRegistry = (*Registry)(nil)
)
