package store_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

var createFunction = regexp.MustCompile(`(?i)CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+([a-z_]+\.[a-z_]+)\s*\(`)

// Every function is defined in exactly one function file, with CREATE OR REPLACE, and no migration defines one.
func TestEachFunctionHasOneHome(t *testing.T) {
	homes := map[string][]string{}
	for _, f := range store.Functions() {
		for _, m := range createFunction.FindAllStringSubmatch(f.SQL, -1) {
			if m[1] == "" {
				t.Errorf("functions/%s: %s is created without OR REPLACE", f.Name, m[2])
			}
			homes[m[2]] = append(homes[m[2]], f.Name)
		}
	}
	if len(homes) < 40 {
		t.Fatalf("found only %d functions in functions/: %v", len(homes), homes)
	}
	for name, files := range homes {
		if len(files) != 1 {
			t.Errorf("%s is defined %d times: %v", name, len(files), files)
		}
	}
	for _, m := range store.Migrations() {
		if fn := createFunction.FindStringSubmatch(m.SQL); fn != nil {
			t.Errorf("migration %04d_%s defines function %s: functions belong in functions/", m.Version, m.Name, fn[2])
		}
	}
	// And nowhere else in the package's SQL (the frozen upgrade fixture uses pg_dump's plain CREATE FUNCTION).
	files, _ := filepath.Glob("*/*.sql")
	for _, f := range files {
		if strings.HasPrefix(f, "functions/") {
			continue
		}
		body, _ := os.ReadFile(f)
		if regexp.MustCompile(`(?i)CREATE\s+OR\s+REPLACE\s+FUNCTION`).Match(body) {
			t.Errorf("%s has a CREATE OR REPLACE FUNCTION", f)
		}
	}
}

// Migrate re-applies a function file when its content differs from what the database recorded, and only then.
func TestMigrateReappliesChangedFunctions(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.schema_functions`).Scan(&n); err != nil || n != len(store.Functions()) {
		t.Fatalf("schema_functions has %d rows (%v), want %d", n, err, len(store.Functions()))
	}
	// Someone changed claim by hand; the recorded digest says the file was applied: a rerun leaves it alone.
	if _, err := pool.Exec(ctx, `
		CREATE OR REPLACE FUNCTION tasker._queue_exists(queue text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT tasker._queue_exists('q')`).Scan(&exists); err != nil || exists {
		t.Fatalf("unchanged file re-applied: %v %v", exists, err)
	}
	// A different digest (a new release of queues.sql): the file is applied again.
	if _, err := pool.Exec(ctx, `UPDATE tasker.schema_functions SET sha256 = 'old' WHERE file = 'queues.sql'`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var src string
	if err := pool.QueryRow(ctx, `SELECT prosrc FROM pg_proc WHERE oid = 'tasker._queue_exists(text)'::regprocedure`).Scan(&src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, "to_regclass") {
		t.Fatalf("queues.sql was not re-applied: %s", src)
	}
	// Nothing is executable by PUBLIC after a re-application.
	var public int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM pg_proc AS p
		WHERE p.pronamespace IN ('tasker'::regnamespace, 'tasker_internal'::regnamespace)
		  AND has_function_privilege('public', p.oid, 'EXECUTE')`).Scan(&public); err != nil || public != 0 {
		t.Fatalf("%d functions executable by PUBLIC (%v)", public, err)
	}
}

// The script of --print-sql, applied by hand, gives the schema Migrate gives, and Migrate finds nothing to do.
func TestSchemaSQLIsWhatMigrateApplies(t *testing.T) {
	ctx := testContext(t)
	byHand := pgtest.NewPool(t)
	conn, err := byHand.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, store.SchemaSQL())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	var before string
	if err := byHand.QueryRow(ctx, `SELECT max(applied_at)::text FROM tasker.schema_functions`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, byHand); err != nil {
		t.Fatal(err)
	}
	var after string
	if err := byHand.QueryRow(ctx, `SELECT max(applied_at)::text FROM tasker.schema_functions`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Errorf("Migrate re-applied functions after the printed schema (%s -> %s)", before, after)
	}

	migrated := pgtest.NewPool(t)
	if err := store.Migrate(ctx, migrated); err != nil {
		t.Fatal(err)
	}
	const catalogue = `
		SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
			SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) ||
			       ' ' || coalesce(array_to_string(p.proacl, ','), '') AS x
			FROM pg_proc AS p WHERE p.pronamespace IN ('tasker'::regnamespace, 'tasker_internal'::regnamespace)
			UNION ALL
			SELECT 'column ' || c.table_name || '.' || c.column_name || ' ' || c.data_type || ' ' ||
			       coalesce(c.column_default, '')
			FROM information_schema.columns AS c WHERE c.table_schema IN ('tasker', 'tasker_internal')
			UNION ALL
			SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'tasker'
			UNION ALL
			SELECT 'trigger ' || tgname || ' ' || tgrelid::regclass::text FROM pg_trigger
			WHERE tgrelid::regclass::text LIKE 'tasker.%' AND NOT tgisinternal) AS s`
	var a, b string
	if err := byHand.QueryRow(ctx, catalogue).Scan(&a); err != nil {
		t.Fatal(err)
	}
	if err := migrated.QueryRow(ctx, catalogue).Scan(&b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("the printed schema differs from the migrated one:\n%s", lineDiff(a, b))
	}
}

func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	am, bm := in(a), in(b)
	var out []string
	for l := range am {
		if !bm[l] {
			out = append(out, "only printed: "+l)
		}
	}
	for l := range bm {
		if !am[l] {
			out = append(out, "only migrated: "+l)
		}
	}
	return strings.Join(out, "\n")
}
