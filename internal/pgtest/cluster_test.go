package pgtest_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

// A cluster of its own (not the shared one): Stop must leave no process and no files behind.
func TestClusterStopLeavesNothingRunning(t *testing.T) {
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		t.Skip("external server in use")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgtest.StartCluster(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	var dataDir string
	if err := conn.QueryRow(ctx, `SHOW data_directory`).Scan(&dataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataDir + "/postmaster.pid"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	// Outage and recovery on the same port.
	c.Pause()
	if _, err := pgx.Connect(ctx, c.URL); err == nil {
		t.Fatal("connected to a paused cluster")
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	pidFile, _ := os.ReadFile(dataDir + "/postmaster.pid")
	pid, _ := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])

	c.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("data directory %s still exists after Stop (err=%v)", dataDir, err)
	}
}
