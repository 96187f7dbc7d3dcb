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
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
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
	// Database is the operator's database (see NewDatabase). Nil runs the controllers without one: Tasks report
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
}

// Setup registers every reconciler, the database runnables, and the webhooks when enabled.
func Setup(mgr ctrl.Manager, opts Options) (*Components, error) {
	if err := controllers.SetupIndexes(context.Background(), mgr); err != nil {
		return nil, fmt.Errorf("indexes: %w", err)
	}
	tasks := &controllers.TaskReconciler{
		Client:         mgr.GetClient(),
		Scheme:         mgr.GetScheme(),
		Recorder:       mgr.GetEventRecorder("tasker-operator"),
		StatusInterval: opts.StatusInterval,
		Queues:         opts.Queues,
	}
	if db := opts.Database; db != nil {
		tasks.Engine, tasks.Gate = db.Engine, db
		interval := opts.UpkeepInterval
		if interval <= 0 {
			interval = DefaultUpkeepInterval
		}
		log := mgr.GetLogger().WithName("database")
		if err := metrics.Registry.Register(&dbCollector{db: db}); err != nil {
			return nil, fmt.Errorf("database metrics: %w", err)
		}
		for _, r := range []manager.Runnable{
			db,
			&upkeep{db: db, interval: interval, log: log.WithName("upkeep")},
			&listener{db: db, onTask: tasks.TaskChanged, onResync: tasks.ResyncActive},
		} {
			if err := mgr.Add(r); err != nil {
				return nil, err
			}
		}
	}
	if err := tasks.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("task controller: %w", err)
	}
	if err := (&controllers.TaskTemplateReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("tasktemplate controller: %w", err)
	}
	cronTasks := &controllers.CronTaskReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("tasker-operator"), Clock: opts.Clock}
	if err := cronTasks.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("crontask controller: %w", err)
	}
	pools := &controllers.WorkerPoolReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Queues: opts.Queues}
	if opts.Database != nil {
		pools.Metrics = poolmetrics.New(opts.Database.Pool) // one connection pool shared by every WorkerPool's readings
	}
	if err := pools.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("workerpool controller: %w", err)
	}
	queues := &controllers.QueueReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Queues: opts.Queues}
	if opts.Database != nil {
		queues.Limiter = opts.Database.Engine
	}
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
	return &Components{Tasks: tasks, CronTasks: cronTasks}, nil
}

// SetupWebhooks registers only the validating webhooks; conditions checks the steps' conditions (nil: the
// engine does, at admission).
func SetupWebhooks(mgr ctrl.Manager, conditions webhook.ConditionChecker) error {
	if err := webhook.Setup(mgr, conditions); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}
