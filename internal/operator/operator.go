// Package operator wires the reconcilers, webhooks and database machinery into a controller-runtime manager. The
// manager binary and the integration tests share it, so tests run exactly what ships.
package operator

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/webhook"
)

// DefaultUpkeepInterval is how often the leader runs the engine's maintenance (timeouts, lost messages,
// retention). Step timeouts are enforced to within this interval.
const DefaultUpkeepInterval = 10 * time.Second

// NewScheme returns a scheme with the built-in kinds and tasker.dev/v1alpha1.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	return s
}

// Options select what Setup registers.
type Options struct {
	// EnableWebhooks serves the validating webhooks. Off for `make run` against a cluster that cannot reach the
	// local process.
	EnableWebhooks bool
	// Database is the --database-url database (see NewDatabase), named "default": the database of every
	// namespace no TaskerDatabase takes. Nil: only TaskerDatabases' namespaces have one; the others' Tasks report
	// that no database is configured.
	Database *Database
	// UpkeepInterval: see DefaultUpkeepInterval.
	UpkeepInterval time.Duration
	// StatusInterval is the shortest time between status writes of one Task (controllers.DefaultStatusInterval).
	StatusInterval time.Duration
	// Queues says which queues a cluster administrator shared across namespaces (--shared-queue). The zero
	// Scope shares none: every namespace's queues are its own.
	Queues queuescope.Scope
	// Clock is the time CronTask schedules are compared with (tests step a fake one). Nil: the real clock.
	Clock clock.PassiveClock
}

// Components are what Setup registered, for tests that need to reach into them.
type Components struct {
	Tasks     *controllers.TaskReconciler
	CronTasks *controllers.CronTaskReconciler
	// Databases holds the --database-url database and the TaskerDatabases' ones.
	Databases *Registry
}

// Setup registers every reconciler, the database runnables, and the webhooks when enabled.
func Setup(mgr ctrl.Manager, opts Options) (*Components, error) {
	if err := controllers.SetupIndexes(context.Background(), mgr); err != nil {
		return nil, fmt.Errorf("indexes: %w", err)
	}
	interval := opts.UpkeepInterval
	if interval <= 0 {
		interval = DefaultUpkeepInterval
	}
	log := mgr.GetLogger().WithName("database")
	registry := NewRegistry(mgr.GetClient(), opts.Database, interval, log)
	if err := metrics.Registry.Register(registryCollector{r: registry}); err != nil {
		return nil, fmt.Errorf("database metrics: %w", err)
	}
	if db := opts.Database; db != nil {
		if err := mgr.Add(db); err != nil { // migrates on every replica
			return nil, err
		}
	}
	if err := mgr.Add(registry); err != nil { // upkeep, listeners and probes on the leader
		return nil, err
	}
	tasks := &controllers.TaskReconciler{
		Client:         mgr.GetClient(),
		Scheme:         mgr.GetScheme(),
		Databases:      registry,
		Recorder:       mgr.GetEventRecorder("tasker-operator"),
		StatusInterval: opts.StatusInterval,
		Queues:         opts.Queues,
	}
	registry.SetTaskCallbacks(tasks.TaskChanged, tasks.ResyncActive)
	if err := tasks.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("task controller: %w", err)
	}
	if err := (&controllers.TaskerDatabaseReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Registry: registry}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("taskerdatabase controller: %w", err)
	}
	if err := (&controllers.TaskTemplateReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("tasktemplate controller: %w", err)
	}
	cronTasks := &controllers.CronTaskReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("tasker-operator"), Clock: opts.Clock}
	if err := cronTasks.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("crontask controller: %w", err)
	}
	pools := &controllers.WorkerPoolReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Queues: opts.Queues,
		Databases: registry}
	if err := pools.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("workerpool controller: %w", err)
	}
	queues := &controllers.QueueReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Queues: opts.Queues,
		Databases: registry}
	if err := queues.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("queue controller: %w", err)
	}
	if opts.EnableWebhooks {
		var conditions webhook.ConditionChecker
		if opts.Database != nil {
			conditions = opts.Database.Engine
		}
		if err := SetupWebhooks(mgr, conditions); err != nil {
			return nil, err
		}
	}
	return &Components{Tasks: tasks, CronTasks: cronTasks, Databases: registry}, nil
}

// SetupWebhooks registers only the validating webhooks; conditions checks the steps' conditions (nil: the
// engine does, at admission).
func SetupWebhooks(mgr ctrl.Manager, conditions webhook.ConditionChecker) error {
	if err := webhook.Setup(mgr, conditions); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}
