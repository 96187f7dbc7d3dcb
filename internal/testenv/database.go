package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// DatabaseEnv is a control plane whose operator has a PostgreSQL database of its own.
type DatabaseEnv struct {
	*Env
	DB *operator.Database
	// Pool is the tests' own connection to the operator's database (workers, assertions), independent of the
	// operator's.
	Pool *pgxpool.Pool
	URL  string
}

// StartWithDatabase starts PostgreSQL (pgtest.Setup), creates a database named after prefix, and starts the
// control plane with the operator on it (opts.Operator.Database is set here); it returns once the operator has
// migrated the database. stop undoes it all; it is nil when err is not.
func StartWithDatabase(prefix string, opts Options, storeOpts store.Options, engineOpts engine.Options) (e *DatabaseEnv, stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
			stop = nil
		}
	}()
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, teardown)
	e = &DatabaseEnv{}
	if e.URL, err = pgtest.CreateDatabase(prefix); err != nil {
		return nil, nil, err
	}
	if e.DB, err = operator.NewDatabase(e.URL, storeOpts, engineOpts, false, Logger()); err != nil {
		return nil, nil, err
	}
	opts.Operator.Database = e.DB
	if e.Env, err = Start(opts); err != nil {
		return nil, nil, err
	}
	undo = append(undo, e.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for e.DB.Ready() != nil { // the operator migrates on start: pgmq and the tasker schema
		if ctx.Err() != nil {
			return nil, nil, errors.New("the operator's database never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e.Pool, err = store.Open(ctx, e.URL, store.Options{}); err != nil {
		return nil, nil, fmt.Errorf("open the tests' pool: %w", err)
	}
	undo = append(undo, e.Pool.Close)
	return e, stop, nil
}
