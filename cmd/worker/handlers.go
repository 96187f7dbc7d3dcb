package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// The built-in handlers, for demos and tests. None of them runs commands.
func builtins(client *http.Client) map[string]worker.HandlerFunc {
	return map[string]worker.HandlerFunc{
		"echo":  echoHandler,
		"sleep": sleepHandler,
		"fail":  failHandler,
		"http":  httpHandler(client),
	}
}

// echo returns its inputs as its result (an instance of a map step: its element of the array).
func echoHandler(_ context.Context, s worker.Step) (worker.Result, error) {
	if s.IsMapInstance() { // an instance of a map step (forEach) echoes its element of the array
		return s.Item, nil
	}
	if len(s.Inputs) == 0 {
		return nil, nil
	}
	return s.Inputs, nil
}

// sleep waits inputs.seconds (a number, at most a day), or until its context ends.
func sleepHandler(ctx context.Context, s worker.Step) (worker.Result, error) {
	var in struct {
		Seconds float64 `json:"seconds"`
	}
	if err := s.DecodeInputs(&in); err != nil {
		return nil, worker.Permanent(err)
	}
	if in.Seconds < 0 || in.Seconds > 86400 || math.IsNaN(in.Seconds) {
		return nil, worker.Permanent(fmt.Errorf("inputs.seconds must be between 0 and 86400, got %v", in.Seconds))
	}
	t := time.NewTimer(time.Duration(in.Seconds * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return map[string]float64{"slept": in.Seconds}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// fail fails retryably on attempts 1..inputs.failTimes and then succeeds, or fails permanently when
// inputs.permanent is true. inputs.message is the error message.
func failHandler(_ context.Context, s worker.Step) (worker.Result, error) {
	var in struct {
		FailTimes int    `json:"failTimes"`
		Permanent bool   `json:"permanent"`
		Message   string `json:"message"`
	}
	if err := s.DecodeInputs(&in); err != nil {
		return nil, worker.Permanent(err)
	}
	msg := in.Message
	if msg == "" {
		msg = "failing as asked"
	}
	if in.Permanent {
		return nil, worker.Permanent(errors.New(msg))
	}
	if s.Attempt <= in.FailTimes {
		return nil, fmt.Errorf("%s (set to fail the first %d attempt(s); this was attempt %d)", msg, in.FailTimes, s.Attempt)
	}
	return map[string]int{"attempt": s.Attempt}, nil
}

// httpInputs describe the request of the http handler.
type httpInputs struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	// Body is sent as is when it is a JSON string, else JSON-encoded (with Content-Type application/json unless
	// a header says otherwise).
	Body           json.RawMessage `json:"body"`
	TimeoutSeconds float64         `json:"timeoutSeconds"`
}

// Limits of the http handler.
const (
	httpDefaultTimeout = 30 * time.Second
	httpMaxTimeout     = 10 * time.Minute
	// httpMaxRead is how much of a response body is read; httpMaxResult how much of it goes into the result.
	httpMaxRead   = 1 << 20
	httpMaxResult = 64 << 10
	// httpMaxRetryAfter caps a server's Retry-After.
	httpMaxRetryAfter = time.Hour
)

// httpHandler makes the request described by the inputs. A 2xx response succeeds with {status, body, headers}
// (body as text, whitespace trimmed, at most 64 KiB; truncated is true when it was cut). 4xx responses fail
// permanently, except 408 and 429; those and 5xx responses fail retryably, after the response's Retry-After when
// it has one. Network errors are retryable; invalid inputs permanent.
func httpHandler(client *http.Client) worker.HandlerFunc {
	return func(ctx context.Context, s worker.Step) (worker.Result, error) {
		var in httpInputs
		if err := s.DecodeInputs(&in); err != nil {
			return nil, worker.Permanent(err)
		}
		req, timeout, err := in.request()
		if err != nil {
			return nil, worker.Permanent(err)
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(io.LimitReader(resp.Body, httpMaxRead))
		if err != nil {
			return nil, fmt.Errorf("%s %s: read the response: %w", req.Method, req.URL.Redacted(), err)
		}
		text := strings.TrimSpace(string(body))
		truncated := false
		if len(text) > httpMaxResult {
			text, truncated = text[:httpMaxResult], true
		}
		code := resp.StatusCode
		if code >= 200 && code < 300 {
			headers := make(map[string]string, len(resp.Header))
			for k := range resp.Header {
				headers[k] = resp.Header.Get(k)
			}
			return map[string]any{"status": code, "body": text, "headers": headers, "truncated": truncated}, nil
		}
		excerpt := text
		if len(excerpt) > 256 {
			excerpt = excerpt[:256] + "..."
		}
		herr := fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Redacted(), resp.Status, excerpt)
		switch {
		case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
			if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return nil, worker.RetryAfter(herr, d)
			}
			return nil, herr
		default: // other 4xx, and 1xx/3xx a client does not expect at the end of a request
			return nil, worker.Permanent(herr)
		}
	}
}

func (in httpInputs) request() (*http.Request, time.Duration, error) {
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return nil, 0, fmt.Errorf("inputs.method %q is not an HTTP method", in.Method)
	}
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, 0, fmt.Errorf("inputs.url must be an absolute http or https URL, got %q", in.URL)
	}
	timeout := httpDefaultTimeout
	if in.TimeoutSeconds != 0 {
		if in.TimeoutSeconds < 0 || math.IsNaN(in.TimeoutSeconds) ||
			in.TimeoutSeconds > httpMaxTimeout.Seconds() {
			return nil, 0, fmt.Errorf("inputs.timeoutSeconds must be between 0 and %v", httpMaxTimeout.Seconds())
		}
		timeout = time.Duration(in.TimeoutSeconds * float64(time.Second))
	}
	var (
		body        io.Reader
		contentType string
	)
	if raw := bytes.TrimSpace(in.Body); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		var s string
		if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
			body = strings.NewReader(s)
		} else {
			body, contentType = bytes.NewReader(raw), "application/json"
		}
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, 0, fmt.Errorf("inputs: %w", err)
	}
	for k, v := range in.Headers {
		req.Header.Set(k, v)
	}
	if contentType != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", contentType)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "tasker-worker")
	}
	return req, timeout, nil
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions:
		return true
	}
	return false
}

// retryAfter parses a Retry-After header (delay-seconds or an HTTP date), capped at httpMaxRetryAfter.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(httpMaxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(h); err == nil {
		d = at.Sub(now)
	} else {
		return 0, false
	}
	if d <= 0 {
		return time.Millisecond, true // "now": retry at once rather than after the backoff
	}
	return min(d, httpMaxRetryAfter), true
}
