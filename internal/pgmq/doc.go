// Package pgmq is the project's client of pgmq (Postgres Message Queue), plus a pgmq-compatible schema for
// servers where the pgmq extension is not available.
//
// # Two backends, one client
//
// pgmq is a set of SQL functions in schema pgmq. Production users bring the real thing (the extension, 1.5 to
// 1.13, or its SQL file); this machine and CI cannot install it. Install therefore uses an existing pgmq schema
// when there is one, else creates the extension, else installs compat.sql: the project's own implementation of
// the subset the engine uses (create, drop_queue, purge_queue, list_queues, send, send_batch, read,
// read_with_poll, pop, delete, archive, set_vt, metrics, metrics_all) with the same schema, table layout, types,
// function names, argument names and types, defaults, return types and error messages. Code written against one
// runs unchanged against the other; the conformance tests pin the behaviour down.
//
// # Why every argument is cast
//
// pgmq overloads its functions (send has six forms; read gained a timestamptz overload in 1.12). With untyped
// parameters ($1, $2, $3) PostgreSQL cannot choose between overloads and fails with "function pgmq.send(unknown,
// ...) is not unique" (SQLSTATE 42725), or silently picks a different one after an upgrade. Every statement
// here therefore casts every parameter ($1::text, $2::jsonb, $3::integer, $4::bigint[]), which selects exactly
// one function on every version. The client also only calls overloads that exist in pgmq 1.5, except Pop with
// qty > 1 (pgmq >= 1.7).
//
// # Why columns are named, never *
//
// Column order differs between versions: pgmq 1.10 put last_read_at before vt in message_record (queues created
// earlier have it last in their tables; 1.8.1 to 1.9 called it read_at), and metrics_result grew an 8th column
// in 1.12.1. Every SELECT names its columns. The client looks up the server's message_record layout once (one
// catalog query per Client; WithDB shares it) and selects last_read_at under whichever name exists, or NULL.
//
// # Transactions
//
// A Client runs every statement on the DBTX it was given: a pool, a connection or a pgx.Tx. Built on a
// transaction, sends are invisible to others until commit, and a read that rolls back leaves vt and read_ct as
// they were — the engine relies on this to change state and queue atomically.
//
// # Names and time
//
// The project restricts queue names to ^[a-z0-9_]{1,40}$ (ValidateQueueName, checked before every call), so no
// name ever needs quoting. pgmq counts whole seconds: durations are rounded up.
package pgmq
