// Package ui tests the web UI in a real browser: headless Chromium (Debian's, installed by hack/browser-deps.sh)
// driven through chromedp, against the UI as taskerctl ui serves it, on a real kube-apiserver with the operator
// (envtest) and a real PostgreSQL, with steps run by the worker SDK.
//
// TASKER_UI_SCREENSHOTS=DIR saves screenshots of the main pages into DIR (docs/ui holds the committed ones).
package ui

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
	"github.com/tasker-operator/tasker-operator/internal/ui"
)

var (
	env    *testenv.Env
	dbPool *pgxpool.Pool
	// uiURL is the UI's address, served as `taskerctl ui -A --database-url` serves it.
	uiURL string
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	var stops []func()
	err := setup(ctx, &stops)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/ui:", err)
	} else {
		code = m.Run()
	}
	cancel()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	os.Exit(code)
}

// setup starts PostgreSQL, the control plane with the operator on its own database, and the UI; stops collects
// what to stop afterwards, in the reverse order.
func setup(ctx context.Context, stops *[]func()) error {
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		return err
	}
	*stops = append(*stops, teardown)
	url, err := pgtest.CreateDatabase("ui")
	if err != nil {
		return err
	}
	// The operator writes status at most every 200 ms, so that the UI's updates are seen quickly.
	db, err := operator.NewDatabase(url, store.Options{MaxConns: 10}, engine.Options{}, false, testenv.Logger())
	if err != nil {
		return err
	}
	if env, err = testenv.Start(testenv.Options{Operator: operator.Options{Database: db, UpkeepInterval: time.Second,
		StatusInterval: 200 * time.Millisecond}}); err != nil {
		return err
	}
	*stops = append(*stops, env.Stop)
	for deadline := time.Now().Add(time.Minute); db.Ready() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("the operator's database never became ready")
		}
	}
	if dbPool, err = store.Open(ctx, url, store.Options{MaxConns: 8, ApplicationName: "ui-test"}); err != nil {
		return err
	}
	*stops = append(*stops, dbPool.Close)
	running, err := ui.Start(ctx, ui.Config{REST: env.Config, Scheme: operator.NewScheme(), Address: "127.0.0.1:0",
		Database: engine.New(dbPool, engine.Options{}), ErrorLog: log.New(os.Stderr, "ui: ", log.LstdFlags)})
	if err != nil {
		return err
	}
	// Stopped first (the context is cancelled before the stops run): wait for it before the pool closes.
	*stops = append(*stops, func() {
		if err := running.Wait(); err != nil {
			fmt.Fprintln(os.Stderr, "ui:", err)
		}
	})
	uiURL = running.URL
	return nil
}
