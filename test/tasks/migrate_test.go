package tasks

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// TestManagerMigrateOnly runs `manager --migrate-only` (what the Helm migration Job runs) twice on an empty
// database: the first run migrates to the latest version, the second changes nothing; a bad URL fails.
func TestManagerMigrateOnly(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	url := pgtest.NewDatabase(t)
	for run := 1; run <= 2; run++ {
		out, err := exec.Command(bin, "--migrate-only", "--database-url="+url).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		if run == 2 && !strings.Contains(string(out), `"from":`+strconv.Itoa(store.LatestVersion())) {
			t.Errorf("second run migrated something:\n%s", out)
		}
	}
	conn, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := store.Version(context.Background(), conn)
	if err != nil || v != store.LatestVersion() {
		t.Fatalf("version %d (%v), want %d", v, err, store.LatestVersion())
	}
	out, err := exec.Command(bin, "--migrate-only", "--database-url=postgres://nobody@127.0.0.1:1/none?connect_timeout=2").CombinedOutput()
	if err == nil {
		t.Fatalf("migrating an unreachable database succeeded:\n%s", out)
	}
}
