// Package dbroles tests the database privileges of an install against the PostgreSQL harness: the roles
// config/database/grants.sql creates (the operator's, which owns and migrates the schema, and least-privilege
// worker roles scoped to queues), and the migration path the install's migration Job takes (run twice: the second
// run changes nothing).
package dbroles

import (
	"os"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
