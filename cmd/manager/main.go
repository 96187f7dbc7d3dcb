// Command manager is the tasker-operator: it reconciles Tasks, TaskTemplates and WorkerPools and serves their
// validating webhooks.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/pkg/tracing"
)

func main() {
	var (
		metricsAddr          string
		probeAddr            string
		secureMetrics        bool
		enableLeaderElection bool
		leaderElectionNS     string
		webhookPort          int
		webhookCertDir       string
		enableHTTP2          bool
		databaseURL          string
		dbMaxConns           int
		skipMigrations       bool
		upkeepInterval       time.Duration
		statusInterval       time.Duration
		migrateOnly          bool
		migrateTimeout       time.Duration
		printSQL             bool
	)
	flag.BoolVar(&printSQL, "print-sql", false,
		"Print tasker's whole database schema (migrations and SQL functions) for a DBA to apply by hand, and exit. "+
			"The database needs pgmq first; run the managers with --skip-migrations afterwards.")
	flag.BoolVar(&migrateOnly, "migrate-only", false,
		"Migrate the database (--database-url) and exit: 0 when the schema is current, 1 on failure. For a migration "+
			"Job that gates a rollout (Helm pre-install/pre-upgrade hook); run the managers with --skip-migrations.")
	flag.DurationVar(&migrateTimeout, "migrate-timeout", 5*time.Minute, "Time limit of --migrate-only.")
	flag.StringVar(&databaseURL, "database-url", os.Getenv("TASKER_DATABASE_URL"),
		"PostgreSQL URL of the \"default\" tasker database: every namespace no TaskerDatabase takes (default $TASKER_DATABASE_URL). "+
			"Without it, only the TaskerDatabases' namespaces have a database.")
	flag.IntVar(&dbMaxConns, "database-max-conns", 10, "Size of the operator's connection pool to --database-url, shared by every controller.")
	flag.BoolVar(&skipMigrations, "skip-migrations", false,
		"Do not migrate the database at start-up (for installs that run migrations separately, e.g. a Helm hook); "+
			"the manager then waits until the schema is at least the version it needs.")
	flag.DurationVar(&upkeepInterval, "upkeep-interval", operator.DefaultUpkeepInterval,
		"How often the leader runs the engine's maintenance (step timeouts, lost messages, retention).")
	flag.DurationVar(&statusInterval, "task-status-interval", controllers.DefaultStatusInterval,
		"Shortest time between two status writes of one Task.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address the metrics endpoint binds to (\":8080\" for plain HTTP with --metrics-secure=false; \"0\" disables it).")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with authentication and authorisation through the apiserver.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Elect a leader so that only one of several manager replicas reconciles at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader-election Lease (default: the namespace the manager runs in).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port the admission webhook server listens on.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "",
		"Folder with tls.crt and tls.key for the webhook server (default: the controller-runtime default).")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Allow HTTP/2 on the metrics and webhook servers (off by default: CVE-2023-44487/39325).")
	opts := zap.Options{Development: false}
	var queues queuescope.Scope
	flag.Func("shared-queue", "Share a queue across namespaces: NAME (with every namespace) or NAME=NS1,NS2. "+
		"Repeatable. A shared queue keeps its own name in the database; other queues are their namespace's own.",
		queues.Share)
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if printSQL {
		fmt.Print(store.SchemaSQL())
		return
	}
	if migrateOnly {
		os.Exit(migrate(databaseURL, migrateTimeout))
	}

	enableWebhooks := true
	if v, ok := os.LookupEnv("ENABLE_WEBHOOKS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			log.Error(err, "ENABLE_WEBHOOKS must be true or false")
			os.Exit(2)
		}
		enableWebhooks = b
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics, TLSOpts: tlsOpts}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  operator.NewScheme(),
		Metrics:                 metricsOpts,
		WebhookServer:           webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir, TLSOpts: tlsOpts}),
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          enableLeaderElection,
		LeaderElectionID:        "tasker-operator.tasker.dev",
		LeaderElectionNamespace: leaderElectionNS,
		// The manager exits right after losing the lease, so a new leader never overlaps with this one.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "unable to create manager")
		os.Exit(1)
	}
	opOpts := operator.Options{EnableWebhooks: enableWebhooks, UpkeepInterval: upkeepInterval, StatusInterval: statusInterval,
		Queues: queues}
	if databaseURL != "" {
		db, err := operator.NewDatabase(databaseURL, store.Options{MaxConns: int32(dbMaxConns), ApplicationName: "tasker-operator"},
			engine.Options{}, skipMigrations, ctrl.Log.WithName("database"))
		if err != nil {
			log.Error(err, "invalid --database-url")
			os.Exit(2)
		}
		opOpts.Database = db
	} else {
		log.Info("no --database-url: Tasks will report that no database is configured")
	}
	if _, err := operator.Setup(mgr, opOpts); err != nil {
		log.Error(err, "unable to set up controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	readyz := healthz.Ping
	if enableWebhooks {
		readyz = mgr.GetWebhookServer().StartedChecker()
	}
	if err := mgr.AddReadyzCheck("readyz", readyz); err != nil {
		log.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	// Tracing from the OTEL_* environment (docs/tracing.md): off, and free, unless an OTLP endpoint is set.
	shutdownTracing, tracingOn, err := tracing.Setup(context.Background(), "tasker-operator")
	if err != nil {
		log.Error(err, "unable to set up tracing")
		os.Exit(2)
	}
	log.Info("starting manager", "tracing", tracingOn, "webhooks", enableWebhooks, "leaderElection", enableLeaderElection,
		"sharedQueues", queues.String())
	err = mgr.Start(ctrl.SetupSignalHandler())
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if terr := shutdownTracing(sctx); terr != nil {
		log.Error(terr, "flushing traces failed")
	}
	cancel()
	if err != nil {
		log.Error(err, "manager exited with an error")
		os.Exit(1)
	}
}

// migrate runs the database migrations once; the exit code says whether the schema is current.
func migrate(databaseURL string, timeout time.Duration) int {
	log := ctrl.Log.WithName("migrate")
	if databaseURL == "" {
		log.Error(nil, "--migrate-only needs --database-url (or TASKER_DATABASE_URL)")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctrl.SetupSignalHandler(), timeout)
	defer cancel()
	pool, err := store.Open(ctx, databaseURL, store.Options{MaxConns: 2, ApplicationName: "tasker-migrate"})
	if err != nil {
		log.Error(err, "cannot connect to the database")
		return 1
	}
	defer pool.Close()
	before, _ := store.Version(ctx, pool)
	if err := store.Migrate(ctx, pool); err != nil {
		log.Error(err, "migration failed")
		return 1
	}
	after, err := store.Version(ctx, pool)
	if err != nil {
		log.Error(err, "cannot read the schema version")
		return 1
	}
	log.Info("database schema is current", "from", before, "to", after)
	return 0
}
