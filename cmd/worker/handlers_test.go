package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

func step(inputs string, attempt int) worker.Step {
	return worker.Step{Name: "s", Inputs: json.RawMessage(inputs), Attempt: attempt}
}

func TestEcho(t *testing.T) {
	res, err := echoHandler(context.Background(), step(`{"a":[1,2]}`, 1))
	if err != nil || string(res.(json.RawMessage)) != `{"a":[1,2]}` {
		t.Errorf("echo = %v, %v", res, err)
	}
	if res, err := echoHandler(context.Background(), worker.Step{}); err != nil || res != nil {
		t.Errorf("echo of nothing = %v, %v", res, err)
	}
}

func TestSleep(t *testing.T) {
	begin := time.Now()
	res, err := sleepHandler(context.Background(), step(`{"seconds":0.05}`, 1))
	if err != nil || time.Since(begin) < 50*time.Millisecond {
		t.Errorf("sleep = %v, %v after %s", res, err, time.Since(begin))
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("stop")
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel(cause)
	}()
	begin = time.Now()
	if _, err := sleepHandler(ctx, step(`{"seconds":30}`, 1)); !errors.Is(err, cause) {
		t.Errorf("cancelled sleep returned %v", err)
	}
	if time.Since(begin) > 5*time.Second {
		t.Error("sleep ignored its context")
	}
	for _, bad := range []string{`{"seconds":-1}`, `{"seconds":"x"}`, `{"seconds":1e9}`} {
		if _, err := sleepHandler(context.Background(), step(bad, 1)); !worker.IsPermanent(err) {
			t.Errorf("sleep %s: %v, want a permanent error", bad, err)
		}
	}
}

func TestFail(t *testing.T) {
	in := `{"failTimes":2,"message":"flaky"}`
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := failHandler(context.Background(), step(in, attempt))
		if err == nil || worker.IsPermanent(err) || !strings.Contains(err.Error(), "flaky") {
			t.Errorf("attempt %d: %v, want a retryable error", attempt, err)
		}
	}
	if res, err := failHandler(context.Background(), step(in, 3)); err != nil {
		t.Errorf("attempt 3: %v %v", res, err)
	}
	_, err := failHandler(context.Background(), step(`{"permanent":true,"message":"nope"}`, 1))
	if !worker.IsPermanent(err) || err.Error() != "nope" {
		t.Errorf("permanent: %v", err)
	}
	if _, err := failHandler(context.Background(), step(`{}`, 1)); err != nil {
		t.Errorf("no failures asked: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	var gotMethod, gotBody, gotType, gotHeader string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotMethod, gotBody, gotType, gotHeader = r.Method, string(b), r.Header.Get("Content-Type"), r.Header.Get("X-Test")
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("X-Reply", "yes")
			_, _ = io.WriteString(w, "  hello  \n")
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", httpMaxResult+10))
		case "/missing":
			http.Error(w, "no such thing", http.StatusNotFound)
		case "/limited":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case "/unavailable":
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "/broken":
			http.Error(w, "oops", http.StatusInternalServerError)
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	h := httpHandler(srv.Client())
	call := func(inputs string) (worker.Result, error) {
		return h(context.Background(), step(inputs, 1))
	}

	res, err := call(`{"method":"post","url":"` + srv.URL + `/ok","headers":{"X-Test":"1"},"body":{"k":"v"}}`)
	if err != nil {
		t.Fatal(err)
	}
	m := res.(map[string]any)
	if m["status"] != 200 || m["body"] != "hello" || m["headers"].(map[string]string)["X-Reply"] != "yes" ||
		m["truncated"] != false {
		t.Errorf("result %v", m)
	}
	if gotMethod != "POST" || gotBody != `{"k":"v"}` || gotType != "application/json" || gotHeader != "1" {
		t.Errorf("request: %s %q %q %q", gotMethod, gotBody, gotType, gotHeader)
	}
	if _, err := call(`{"method":"PUT","url":"` + srv.URL + `/ok","body":"plain text"}`); err != nil ||
		gotBody != "plain text" || gotType != "" {
		t.Errorf("string body: %v %q %q", err, gotBody, gotType)
	}
	res, err = call(`{"url":"` + srv.URL + `/big"}`)
	if err != nil || len(res.(map[string]any)["body"].(string)) != httpMaxResult || res.(map[string]any)["truncated"] != true {
		t.Errorf("big body: %v", err)
	}

	_, err = call(`{"url":"` + srv.URL + `/missing"}`)
	if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	_, err = call(`{"url":"` + srv.URL + `/limited"}`)
	if d, ok := worker.RetryDelay(err); worker.IsPermanent(err) || !ok || d != 7*time.Second {
		t.Errorf("429: %v (delay %s)", err, d)
	}
	_, err = call(`{"url":"` + srv.URL + `/unavailable"}`)
	if d, ok := worker.RetryDelay(err); worker.IsPermanent(err) || !ok || d < 80*time.Second || d > 91*time.Second {
		t.Errorf("503 with a date: %v (delay %s)", err, d)
	}
	_, err = call(`{"url":"` + srv.URL + `/broken"}`)
	if _, ok := worker.RetryDelay(err); err == nil || worker.IsPermanent(err) || ok {
		t.Errorf("500: %v", err)
	}
	begin := time.Now()
	_, err = call(`{"url":"` + srv.URL + `/slow","timeoutSeconds":0.1}`)
	if err == nil || worker.IsPermanent(err) || time.Since(begin) > 3*time.Second {
		t.Errorf("timeout: %v after %s", err, time.Since(begin))
	}

	for _, bad := range []string{
		`{"url":"ftp://x/y"}`, `{"url":"/relative"}`, `{"method":"BREW","url":"http://127.0.0.1/"}`,
		`{"url":"http://127.0.0.1/","timeoutSeconds":-1}`, `{"url":3}`,
	} {
		if _, err := call(bad); !worker.IsPermanent(err) {
			t.Errorf("inputs %s: %v, want a permanent error", bad, err)
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"3":                             3 * time.Second,
		"0":                             time.Millisecond,
		"999999":                        httpMaxRetryAfter,
		"Wed, 01 Jan 2025 00:00:10 GMT": 10 * time.Second,
		"Tue, 31 Dec 2024 00:00:00 GMT": time.Millisecond,
	} {
		if got, ok := retryAfter(h, now); !ok || got != want {
			t.Errorf("retryAfter(%q) = %s, %v; want %s", h, got, ok, want)
		}
	}
	for _, h := range []string{"", "soon", "-5"} {
		if _, ok := retryAfter(h, now); ok {
			t.Errorf("retryAfter(%q) accepted", h)
		}
	}
}

func TestFlags(t *testing.T) {
	env := map[string]string{
		"TASKER_DATABASE_URL": "postgres://db/x", "TASKER_QUEUES": "a, b,", "TASKER_SLOTS": "8",
		"TASKER_WORKER_ID": "pod-1", "TASKER_DRAIN_TIMEOUT": "40",
	}
	o, err := parseFlags([]string{"--slots=2", "--visibility-timeout=5s"}, func(k string) string { return env[k] },
		io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.databaseURL != "postgres://db/x" || len(o.queues) != 2 || o.queues[1] != "b" || o.slots != 2 ||
		o.id != "pod-1" || o.visibilityTimeout != 5*time.Second || o.drainTimeout != 40*time.Second ||
		o.metricsAddr != ":8080" {
		t.Errorf("options %+v", o)
	}
	none := func(string) string { return "" }
	if _, err := parseFlags(nil, none, io.Discard); err == nil {
		t.Error("missing database URL accepted")
	}
	if _, err := parseFlags([]string{"--database-url=x", "--slots=0", "--poll-interval=soon"}, none, io.Discard); err == nil {
		t.Error("bad values accepted")
	}
	if code := run([]string{"--database-url=x", "--log-level=loud"}, none, io.Discard); code != 2 {
		t.Errorf("exit code %d for a bad flag, want 2", code)
	}
	if code := run([]string{"-h"}, none, io.Discard); code != 0 {
		t.Errorf("exit code %d for -h", code)
	}
}
