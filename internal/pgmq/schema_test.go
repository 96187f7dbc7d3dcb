package pgmq_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The compatible schema exposes exactly pgmq's signatures (names, argument names and types, defaults, results)
// for the subset PGMQ.md lists.
func TestSchemaFunctionSignatures(t *testing.T) {
	b := setup(t)
	rows, err := b.pool.Query(b.ctx, `
		SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || pg_get_function_result(p.oid)
		FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
		WHERE n.nspname = 'pgmq'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	const mr = "SETOF pgmq.message_record"
	want := []string{
		"archive(queue_name text, msg_id bigint) boolean",
		"archive(queue_name text, msg_ids bigint[]) SETOF bigint",
		"create(queue_name text) void",
		"delete(queue_name text, msg_id bigint) boolean",
		"delete(queue_name text, msg_ids bigint[]) SETOF bigint",
		"drop_queue(queue_name text) boolean",
		"format_table_name(queue_name text, prefix text) text",
		"list_queues() SETOF pgmq.queue_record",
		"metrics(queue_name text) pgmq.metrics_result",
		"metrics_all() SETOF pgmq.metrics_result",
		"pop(queue_name text, qty integer DEFAULT 1) " + mr,
		"purge_queue(queue_name text) bigint",
		"read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}'::jsonb) " + mr,
		"read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, " +
			"poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT '{}'::jsonb) " + mr,
		"send(queue_name text, msg jsonb) SETOF bigint",
		"send(queue_name text, msg jsonb, delay integer) SETOF bigint",
		"send(queue_name text, msg jsonb, delay timestamp with time zone) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb, delay integer) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[]) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], delay integer) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[]) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) SETOF bigint",
		"set_vt(queue_name text, msg_id bigint, vt integer) " + mr,
		"set_vt(queue_name text, msg_id bigint, vt timestamp with time zone) " + mr,
		"validate_queue_name(queue_name text) void",
	}
	if !slices.Equal(got, want) {
		t.Errorf("pgmq functions:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// columns lists "name type" of a table or composite type, in order.
func columns(t *testing.T, b *testBundle, relation string) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `
		SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
		       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
		       || CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity' ELSE '' END
		       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute AS a
		LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, relation)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestSchemaTypesAndTables(t *testing.T) {
	b := setupQueue(t)
	tz := "timestamp with time zone"
	for _, tc := range []struct {
		relation string
		want     []string
	}{
		{"pgmq.message_record", []string{"msg_id bigint", "read_ct integer", "enqueued_at " + tz,
			"last_read_at " + tz, "vt " + tz, "message jsonb", "headers jsonb"}},
		{"pgmq.queue_record", []string{"queue_name character varying", "is_partitioned boolean",
			"is_unlogged boolean", "created_at " + tz}},
		{"pgmq.metrics_result", []string{"queue_name text", "queue_length bigint", "newest_msg_age_sec integer",
			"oldest_msg_age_sec integer", "total_messages bigint", "scrape_time " + tz,
			"queue_visible_length bigint"}},
		{"pgmq.meta", []string{"queue_name character varying not null", "is_partitioned boolean not null",
			"is_unlogged boolean not null", "created_at " + tz + " not null default now()"}},
		{"pgmq.q_q", []string{"msg_id bigint not null identity always", "read_ct integer not null default 0",
			"enqueued_at " + tz + " not null default now()", "last_read_at " + tz, "vt " + tz + " not null",
			"message jsonb", "headers jsonb"}},
		{"pgmq.a_q", []string{"msg_id bigint not null", "read_ct integer not null default 0",
			"enqueued_at " + tz + " not null default now()", "last_read_at " + tz,
			"archived_at " + tz + " not null default now()", "vt " + tz + " not null", "message jsonb",
			"headers jsonb"}},
	} {
		if got := columns(t, b, tc.relation); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.relation, got, tc.want)
		}
	}

	// Indexes: primary keys on msg_id, vt on the queue, archived_at on the archive; meta.queue_name unique.
	rows, err := b.pool.Query(b.ctx, `
		SELECT indrelid::regclass::text || ' ' || regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '')
		FROM pg_index
		WHERE indrelid IN ('pgmq.q_q'::regclass, 'pgmq.a_q'::regclass, 'pgmq.meta'::regclass)
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	wantIdx := []string{"pgmq.a_q btree (archived_at)", "pgmq.a_q btree (msg_id)", "pgmq.meta btree (queue_name)",
		"pgmq.q_q btree (msg_id)", "pgmq.q_q btree (vt)"}
	if !slices.Equal(got, wantIdx) {
		t.Errorf("indexes:\ngot  %q\nwant %q", got, wantIdx)
	}
	if !b.queryBool(t, `SELECT bool_and(indisprimary) FROM pg_index WHERE indrelid IN ('pgmq.q_q'::regclass, 'pgmq.a_q'::regclass) AND indkey::text = '1'`) {
		t.Error("msg_id is not the primary key of both tables")
	}

	// Aggressive autovacuum on the churning queue table.
	var opts []string
	if err := b.pool.QueryRow(b.ctx, `SELECT reloptions FROM pg_class WHERE oid = 'pgmq.q_q'::regclass`).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"autovacuum_vacuum_scale_factor=0.01", "autovacuum_vacuum_threshold=100"} {
		if !slices.Contains(opts, want) {
			t.Errorf("q_q reloptions %q lack %s", opts, want)
		}
	}
}
