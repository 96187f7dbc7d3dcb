package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	t.Setenv(EnvWorkerID, "pod-7")
	c, err := Config{Queues: []string{"default"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Slots != DefaultSlots || c.VisibilityTimeout != DefaultVisibilityTimeout ||
		c.HeartbeatInterval != DefaultVisibilityTimeout/3 || c.PollInterval != DefaultPollInterval ||
		c.DrainTimeout != DefaultDrainTimeout || c.RecordInterval != DefaultRecordInterval || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.ID != "pod-7" {
		t.Errorf("ID = %q, want the %s variable", c.ID, EnvWorkerID)
	}

	t.Setenv(EnvWorkerID, "")
	c, err = Config{Queues: []string{"q"}, VisibilityTimeout: 6 * time.Second, DrainTimeout: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" {
		t.Error("ID should default to the host name")
	}
	if c.HeartbeatInterval != 2*time.Second {
		t.Errorf("HeartbeatInterval = %s, want a third of the visibility timeout", c.HeartbeatInterval)
	}
	if c.DrainTimeout != 0 {
		t.Errorf("negative DrainTimeout should mean 0, got %s", c.DrainTimeout)
	}
}

func TestConfigInvalid(t *testing.T) {
	for name, c := range map[string]Config{
		"no queue":           {},
		"bad queue":          {Queues: []string{"Bad-Name"}},
		"duplicate queue":    {Queues: []string{"a", "a"}},
		"negative slots":     {Queues: []string{"a"}, Slots: -1},
		"short vt":           {Queues: []string{"a"}, VisibilityTimeout: 500 * time.Millisecond},
		"heartbeat too slow": {Queues: []string{"a"}, VisibilityTimeout: 3 * time.Second, HeartbeatInterval: 3 * time.Second},
		"long id":            {Queues: []string{"a"}, ID: strings.Repeat("x", 256)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.withDefaults(); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestErrorMarks(t *testing.T) {
	base := errors.New("boom")
	p := Permanent(fmt.Errorf("wrapped: %w", base))
	if !IsPermanent(p) || !errors.Is(p, base) || p.Error() != "wrapped: boom" {
		t.Errorf("Permanent: %v", p)
	}
	if !IsPermanent(fmt.Errorf("outer: %w", p)) {
		t.Error("IsPermanent should see through wrapping")
	}
	if IsPermanent(base) {
		t.Error("a plain error is not permanent")
	}
	if Permanent(nil).Error() == "" {
		t.Error("Permanent(nil) needs a message")
	}

	r := RetryAfter(base, 3*time.Second)
	if d, ok := RetryDelay(fmt.Errorf("x: %w", r)); !ok || d != 3*time.Second {
		t.Errorf("RetryDelay = %s, %v", d, ok)
	}
	if !errors.Is(r, base) || IsPermanent(r) {
		t.Errorf("RetryAfter: %v", r)
	}
	if _, ok := RetryDelay(RetryAfter(base, 0)); ok {
		t.Error("RetryAfter(err, 0) should fall back to the backoff policy")
	}
	if _, ok := RetryDelay(base); ok {
		t.Error("plain error has no delay")
	}
}

func TestStepDecode(t *testing.T) {
	s := Step{
		Name:              "child",
		Inputs:            json.RawMessage(`{"n": 3}`),
		TaskContext:       json.RawMessage(`null`),
		DependencyResults: map[string]json.RawMessage{"a": json.RawMessage(`"x"`), "r": json.RawMessage(`null`)},
	}
	var in struct{ N int }
	if err := s.DecodeInputs(&in); err != nil || in.N != 3 {
		t.Errorf("DecodeInputs: %v %+v", err, in)
	}
	ctx := map[string]any{"keep": true}
	if err := s.DecodeContext(&ctx); err != nil || ctx["keep"] != true {
		t.Errorf("null context should leave the value alone: %v %v", err, ctx)
	}
	var a string
	if err := s.DecodeDependency("a", &a); err != nil || a != "x" {
		t.Errorf("DecodeDependency: %v %q", err, a)
	}
	r := "unchanged"
	if err := s.DecodeDependency("r", &r); err != nil || r != "unchanged" {
		t.Errorf("resolved dependency: %v %q", err, r)
	}
	if err := s.DecodeDependency("nope", &a); err == nil {
		t.Error("unknown dependency should be an error")
	}
	var wrong int
	if err := s.DecodeInputs(&wrong); err == nil {
		t.Error("type mismatch should be an error")
	}
}

func TestEncodeResult(t *testing.T) {
	for _, c := range []struct {
		in   Result
		want string
		err  bool
	}{
		{nil, "", false},
		{json.RawMessage(`{"a":1}`), `{"a":1}`, false},
		{json.RawMessage(`{bad`), "", true},
		{map[string]int{"a": 1}, `{"a":1}`, false},
		{"s", `"s"`, false},
		{make(chan int), "", true},
	} {
		got, err := encodeResult(c.in)
		if (err != nil) != c.err || string(got) != c.want {
			t.Errorf("encodeResult(%v) = %s, %v", c.in, got, err)
		}
	}
}

// A map instance has its item (JSON null included); any other step, even a zero Step, is not one.
func TestIsMapInstance(t *testing.T) {
	var v []int
	for _, tc := range []struct {
		s    Step
		want bool
	}{
		{Step{}, false},
		{Step{ItemIndex: -1}, false},
		{Step{Item: json.RawMessage(`null`), ItemIndex: 0}, true},
		{Step{Item: json.RawMessage(`[1,2]`), ItemIndex: 3}, true},
	} {
		if got := tc.s.IsMapInstance(); got != tc.want {
			t.Errorf("%+v: IsMapInstance = %v", tc.s, got)
		}
	}
	if err := (Step{Item: json.RawMessage(`[1,2]`)}).DecodeItem(&v); err != nil || len(v) != 2 {
		t.Errorf("DecodeItem: %v, %v", v, err)
	}
}
