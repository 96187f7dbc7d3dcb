package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// TestArgoCDHealthChecks runs the Lua health checks docs/install.md ships for Argo CD, as written there, against
// Task, CronTask and WorkerPool objects in each state (Argo CD runs them with gopher-lua too, obj being the object).
func TestArgoCDHealthChecks(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(data:\n  resource\\.customizations\\.health\\..*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal("docs/install.md has no resource.customizations.health block")
	}
	var cm struct{ Data map[string]string }
	if err := yaml.Unmarshal(block[1], &cm); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{}
	for key, script := range cm.Data {
		checks[strings.TrimPrefix(key, "resource.customizations.health.")] = script
	}
	tests := []struct {
		kind, object, status, message string
	}{
		{"tasker.dev_Task", `{}`, "Progressing", "admitted"},
		{"tasker.dev_Task", `{"status":{"phase":"Running","progress":"2/5"}}`, "Progressing", "running: 2/5"},
		{"tasker.dev_Task", `{"status":{"phase":"Succeeded","progress":"5/5"}}`, "Healthy", "5/5"},
		{"tasker.dev_Task", `{"status":{"phase":"Failed","conditions":[{"type":"Failed","status":"True",
			"message":"step charge failed: card declined"}]}}`, "Degraded", "card declined"},
		{"tasker.dev_Task", `{"status":{"phase":"Cancelled"}}`, "Degraded", "cancelled"},
		{"tasker.dev_CronTask", `{}`, "Progressing", "operator"},
		{"tasker.dev_CronTask", `{"spec":{"suspend":true},"status":{"conditions":[{"type":"Ready","status":"True",
			"message":"suspended: no Tasks are created"}]}}`, "Suspended", "suspended"},
		{"tasker.dev_CronTask", `{"spec":{"suspend":false},"status":{"conditions":[{"type":"Ready","status":"True",
			"message":"next run at 2027-01-01T11:00:00Z"}]}}`, "Healthy", "next run"},
		{"tasker.dev_CronTask", `{"status":{"conditions":[{"type":"Ready","status":"False",
			"message":"time zone \"Mars/Olympus\": unknown time zone"}]}}`, "Degraded", "time zone"},
		{"tasker.dev_WorkerPool", `{}`, "Progressing", "operator"},
		{"tasker.dev_WorkerPool", `{"status":{"desiredReplicas":2,"readyReplicas":2,"conditions":[{"type":"Ready",
			"status":"True","message":"Deployment reconciled"}]}}`, "Healthy", "reconciled"},
		{"tasker.dev_WorkerPool", `{"status":{"desiredReplicas":3,"readyReplicas":1,"conditions":[{"type":"Ready",
			"status":"True","message":"Deployment reconciled"}]}}`, "Progressing", "1 of 3"},
		{"tasker.dev_WorkerPool", `{"status":{"conditions":[{"type":"Ready","status":"False",
			"message":"a Deployment named wp exists and is not owned by the pool"}]}}`, "Degraded", "not owned"},
	}
	for _, tt := range tests {
		script, ok := checks[tt.kind]
		if !ok {
			t.Fatalf("no health check for %s in docs/install.md", tt.kind)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(tt.object), &obj); err != nil {
			t.Fatal(err)
		}
		status, message := runHealthCheck(t, script, obj)
		if status != tt.status || !strings.Contains(message, tt.message) {
			t.Errorf("%s %s: %s %q, want %s with %q", tt.kind, tt.object, status, message, tt.status, tt.message)
		}
	}
}

func runHealthCheck(t *testing.T, script string, obj map[string]any) (status, message string) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health check: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health check returned %s, not a table", L.Get(-1).Type())
	}
	return hs.RawGetString("status").String(), hs.RawGetString("message").String()
}

// toLua converts decoded JSON the way Argo CD hands objects to its Lua checks.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, x := range v {
			t.RawSetString(k, toLua(L, x))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, x := range v {
			t.Append(toLua(L, x))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}
