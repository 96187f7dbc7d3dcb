// Package ui tests the web UI in a real browser: headless Chromium (Debian's, installed by hack/browser-deps.sh)
// driven through chromedp, against the UI as taskerctl ui serves it, on a real kube-apiserver with the operator
// (envtest) and a real PostgreSQL, with steps run by the worker SDK.
//
// TASKER_UI_SCREENSHOTS=DIR saves screenshots of the main pages into DIR (docs/ui holds the committed ones).
package ui

import (
	"context"
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

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer teardown()
	url, err := pgtest.CreateDatabase("ui")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The operator writes status at most every 200 ms, so that the UI's updates are seen quickly.
	db, err := operator.NewDatabase(url, store.Options{MaxConns: 10}, engine.Options{}, false, testenv.Logger())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.Start(testenv.Options{Operator: operator.Options{Database: db, UpkeepInterval: time.Second,
		StatusInterval: 200 * time.Millisecond}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for deadline := time.Now().Add(time.Minute); db.Ready() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the operator's database never became ready")
			return 1
		}
	}
	dbPool, err = store.Open(ctx, url, store.Options{MaxConns: 8, ApplicationName: "ui-test"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer dbPool.Close()
	running, err := ui.Start(ctx, ui.Config{REST: env.Config, Scheme: operator.NewScheme(), Address: "127.0.0.1:0",
		Database: engine.New(dbPool, engine.Options{}), ErrorLog: log.New(os.Stderr, "ui: ", log.LstdFlags)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	uiURL = running.URL
	code := m.Run()
	cancel()
	if err := running.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "ui:", err)
	}
	return code
}
