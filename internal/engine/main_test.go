package engine_test

import (
	"flag"
	"os"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

// EnvDurable = 1 runs the package's tests and benchmarks on a durable cluster (fsync and synchronous_commit on),
// which is what the benchmark figures in docs/benchmarks.md are about. Benchmark runs (-test.bench set) are
// durable unless TASKER_DURABLE=0.
const EnvDurable = "TASKER_DURABLE"

func TestMain(m *testing.M) {
	flag.Parse()
	durable := os.Getenv(EnvDurable) == "1"
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" && os.Getenv(EnvDurable) != "0" {
		durable = true
	}
	os.Exit(pgtest.MainWith(m, pgtest.Options{Durable: durable}))
}
