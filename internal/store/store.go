// Package store owns tasker's PostgreSQL schema: the connection pool settings every component uses, and the
// embedded, numbered, forward-only migrations that create schema tasker (tables and the SQL functions of the
// worker protocol, see docs/worker-protocol.md) on top of pgmq.
//
// The package imports nothing from Kubernetes. SQL lives in .sql files embedded with go:embed.
package store

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what read-only helpers run on: *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx satisfy it.
type DBTX interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Defaults applied by Open.
const (
	// DefaultStatementTimeout bounds every statement (statement_timeout): a protocol call is a few milliseconds,
	// so a statement running for 30 s is stuck (a lock held by a forgotten transaction, a runaway query) and is
	// better cancelled than left holding a connection.
	DefaultStatementTimeout = 30 * time.Second
	// DefaultIdleInTransactionTimeout ends sessions that sit in an open transaction
	// (idle_in_transaction_session_timeout): such a session holds row locks that stall every worker touching the
	// same task. The engine never keeps a transaction open across a round trip to anything but PostgreSQL.
	DefaultIdleInTransactionTimeout = 60 * time.Second
	// DefaultApplicationName shows up in pg_stat_activity.
	DefaultApplicationName = "tasker"
	// DefaultMaxConnIdleTime closes connections idle that long, so a burst does not pin connections forever.
	DefaultMaxConnIdleTime = 5 * time.Minute
	// DefaultMaxConnLifetime recycles connections (and their cached plans) now and then, which also spreads them
	// over new replicas behind a pooler or a failover.
	DefaultMaxConnLifetime = time.Hour
)

// Options tune Open. The zero value gives the documented defaults.
type Options struct {
	// MaxConns is the pool size. Default: max(4, 2 x GOMAXPROCS): protocol calls are short and mostly wait on
	// the server, so a couple of connections per core keep it busy without flooding it.
	MaxConns int32
	// MinConns connections are kept open. Default 0.
	MinConns int32
	// StatementTimeout is the session's statement_timeout. Default DefaultStatementTimeout; negative disables.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout is the session's idle_in_transaction_session_timeout. Default
	// DefaultIdleInTransactionTimeout; negative disables.
	IdleInTransactionTimeout time.Duration
	// ApplicationName is the session's application_name. Default DefaultApplicationName.
	ApplicationName string
	// MaxConnIdleTime and MaxConnLifetime: defaults DefaultMaxConnIdleTime and DefaultMaxConnLifetime.
	MaxConnIdleTime time.Duration
	MaxConnLifetime time.Duration
	// Tracer, when set, traces every query (benchmarks count round trips with it).
	Tracer pgx.QueryTracer
}

// Config parses url (a PostgreSQL URL or key=value string) into a pool configuration with opts applied. Settings
// given in url's runtime parameters (e.g. options or statement_timeout in the URL) win over the defaults.
func Config(url string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database URL: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	} else {
		cfg.MaxConns = int32(max(4, 2*runtime.GOMAXPROCS(0)))
	}
	if opts.MinConns > 0 {
		cfg.MinConns = min(opts.MinConns, cfg.MaxConns)
	}
	cfg.MaxConnIdleTime = durationOr(opts.MaxConnIdleTime, DefaultMaxConnIdleTime)
	cfg.MaxConnLifetime = durationOr(opts.MaxConnLifetime, DefaultMaxConnLifetime)

	params := cfg.ConnConfig.RuntimeParams
	setDefault := func(name, value string) {
		if _, ok := params[name]; !ok && value != "" {
			params[name] = value
		}
	}
	setDefault("statement_timeout", millis(opts.StatementTimeout, DefaultStatementTimeout))
	setDefault("idle_in_transaction_session_timeout",
		millis(opts.IdleInTransactionTimeout, DefaultIdleInTransactionTimeout))
	appName := opts.ApplicationName
	if appName == "" {
		appName = DefaultApplicationName
	}
	setDefault("application_name", appName)
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	return cfg, nil
}

// Open creates a connection pool (see Config for the settings) and checks that the server answers.
func Open(ctx context.Context, url string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := Config(url, opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return pool, nil
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// millis renders a timeout setting: "" leaves the server default, "0" disables.
func millis(d, def time.Duration) string {
	switch {
	case d < 0:
		return "0"
	case d == 0:
		d = def
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}
