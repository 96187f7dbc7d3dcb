package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// The alerts and the Grafana dashboard of config/prometheus (the Helm chart ships copies of them, checked by
// test/packaging) are checked here against the metrics the code registers: every series they select must be one
// that the manager or the worker SDK exports, with label names it has. The expressions are parsed by Prometheus'
// own parser, with its default options (no experimental functions), and the rules validated like `promtool check
// rules` does.

const (
	rulesFile     = "../../config/prometheus/rules.yaml"
	dashboardFile = "../../config/prometheus/grafana-dashboard.json"
	metricsDoc    = "../../docs/metrics.md"
)

// exportedMetric is what the checks know of a metric.
type exportedMetric struct {
	labels    []string
	histogram bool // it has _bucket, _count and _sum series
}

// exportedMetrics returns the metrics the manager and the worker SDK export, from their collectors'
// descriptions: the controllers' (registered with controller-runtime's registry at init), this package's, and
// those a worker registers.
func exportedMetrics(t *testing.T) map[string]exportedMetric {
	t.Helper()
	collectors := append(controllers.Collectors(), upkeepRuns, &dbCollector{})
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/unused") // lazy: never connects
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	rec := &recordingRegisterer{}
	if _, err := worker.New(pool, worker.Config{Queues: []string{"q"}, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	if len(rec.collectors) == 0 {
		t.Fatal("the worker registered no collector")
	}
	collectors = append(collectors, rec.collectors...)

	out := map[string]exportedMetric{}
	for _, c := range collectors {
		var histogram bool
		switch c.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			histogram = true
		}
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name, labelNames, err := describe(d)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = exportedMetric{labels: labelNames, histogram: histogram}
		}
	}
	return out
}

// recordingRegisterer keeps what is registered with it.
type recordingRegisterer struct{ collectors []prometheus.Collector }

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return false }

var (
	descName   = regexp.MustCompile(`fqName: ("(?:[^"\\]|\\.)*")`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// describe returns a description's metric name and variable label names. client_golang has no accessor for
// them: they are read from Desc.String, and a change of its format fails the test rather than passing it.
func describe(d *prometheus.Desc) (string, []string, error) {
	if err := d.Err(); err != nil {
		return "", nil, err
	}
	s := d.String()
	m, l := descName.FindStringSubmatch(s), descLabels.FindStringSubmatch(s)
	if m == nil || l == nil {
		return "", nil, fmt.Errorf("cannot read the name and labels of %s", s)
	}
	name, err := strconv.Unquote(m[1])
	if err != nil {
		return "", nil, err
	}
	var labelNames []string
	if l[1] != "" {
		labelNames = strings.Split(l[1], ",")
	}
	return name, labelNames, nil
}

// promql parses expressions like Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

// checkExpr parses a PromQL expression and returns what is wrong with the series it selects: a metric that is
// not exported (histograms' _bucket, _count and _sum series are the histogram's), a label the metric does not
// have.
func checkExpr(expr string, exported map[string]exportedMetric) []error {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return []error{err}
	}
	var errs []error
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			errs = append(errs, checkSelector(vs.Name, vs.LabelMatchers, exported)...)
		}
		return nil
	})
	return errs
}

func checkSelector(name string, matchers []*labels.Matcher, exported map[string]exportedMetric) []error {
	if name == "" {
		return []error{fmt.Errorf("a selector without a metric name: %v", matchers)}
	}
	metric, ok := exported[name]
	labelNames := metric.labels
	if !ok {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, cut := strings.CutSuffix(name, suffix); cut {
				metric, ok = exported[base]
				ok = ok && metric.histogram
				labelNames = metric.labels
				if suffix == "_bucket" {
					labelNames = append(slices.Clip(labelNames), "le")
				}
				break
			}
		}
	}
	if !ok {
		return []error{fmt.Errorf("metric %s is not exported", name)}
	}
	var errs []error
	for _, m := range matchers {
		if m.Name != model.MetricNameLabel && !slices.Contains(labelNames, m.Name) {
			errs = append(errs, fmt.Errorf("metric %s has no label %s (it has %v)", name, m.Name, labelNames))
		}
	}
	return errs
}

func TestCheckExprFindsWhatIsNotExported(t *testing.T) {
	exported := exportedMetrics(t)
	for expr, want := range map[string]string{
		`sum(rate(tasker_worker_steps_failed_total{handler="h"}[5m]))`:                                       "",
		`histogram_quantile(0.99, sum by (le) (rate(tasker_task_admission_seconds_bucket{le!="+Inf"}[5m])))`: "",
		`max by (queue) (tasker_queue_backlog)`:                                                              "",
		`rate(tasker_worker_steps_faild_total[5m])`:                                                          "tasker_worker_steps_faild_total is not exported",
		`tasker_queue_backlog{queue_name="a"}`:                                                               "has no label queue_name",
		`tasker_tasks_finished_total_bucket`:                                                                 "tasker_tasks_finished_total_bucket is not exported",
		`{__name__=~"tasker_.*"}`:                                                                            "without a metric name",
		`sum(rate(tasker_tasks[5m])`:                                                                         "parse error",
	} {
		errs := checkExpr(expr, exported)
		switch {
		case want == "" && len(errs) > 0:
			t.Errorf("%s: %v", expr, errs)
		case want != "" && !strings.Contains(fmt.Sprint(errs), want):
			t.Errorf("%s: errors %v, want one saying %q", expr, errs, want)
		}
	}
}

// TestAlertRules validates the PrometheusRule's groups as `promtool check rules` does (rule syntax, PromQL, label
// names, annotation templates), checks its expressions against the exported metrics, and that every alert has a
// severity, a summary and a description, and is documented in docs/metrics.md.
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		APIVersion string    `yaml:"apiVersion"`
		Kind       string    `yaml:"kind"`
		Spec       yaml.Node `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", rulesFile, obj.APIVersion, obj.Kind)
	}
	spec, err := yaml.Marshal(&obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(spec, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("invalid rules: %v", errors.Join(errs...))
	}
	doc, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			for _, err := range checkExpr(r.Expr, exported) {
				t.Errorf("%s: %v", name, err)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", name, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", name)
			}
			if time.Duration(r.For) < time.Minute {
				t.Errorf("%s: for %s: an alert should last a minute at least before it fires", name, r.For)
			}
			if !strings.Contains(string(doc), "`"+r.Alert+"`") {
				t.Errorf("%s is not documented in docs/metrics.md", name)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alert found")
	}
}

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardDatasource is the dashboard's data source variable: every query goes to the Prometheus it selects.
var dashboardDatasource = datasource{Type: "prometheus", UID: "${datasource}"}

var (
	grafanaRange    = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)
	grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_]\w*\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_]\w*)\)$`)
)

// expandVariables replaces the dashboard's variables by values PromQL accepts: ranges by 5m, the others (used in
// label matchers) by a regular expression.
func expandVariables(expr string) string {
	return grafanaVariable.ReplaceAllString(grafanaRange.ReplaceAllString(expr, "5m"), ".*")
}

// withLabel adds the matcher label!="" to a selector, so that the label's name is checked too.
func withLabel(selector, label string) string {
	if s, ok := strings.CutSuffix(selector, "}"); ok {
		return fmt.Sprintf(`%s, %s!=""}`, s, label)
	}
	return fmt.Sprintf(`%s{%s!=""}`, selector, label)
}

// TestDashboard checks the Grafana dashboard: every panel queries the data source variable with expressions that
// parse and select exported metrics and labels, the variables' queries too, panel ids are unique, and it shows
// the figures the observability issue asked for.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed (the uid keeps links stable across imports)", d.UID, d.Title)
	}
	exported := exportedMetrics(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, err := range checkExpr(expandVariables(expr), exported) {
			t.Errorf("%s: %s: %v", where, expr, err)
		}
		if e, err := promql.ParseExpr(expandVariables(expr)); err == nil {
			parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					used[vs.Name] = true
				}
				return nil
			})
		}
	}

	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] {
				t.Errorf("%s: id used twice", where)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: gridPos %+v", where, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource != dashboardDatasource || len(p.Targets) == 0 {
				t.Errorf("%s: data source %+v, %d queries; want queries of %+v", where, p.Datasource, len(p.Targets),
					dashboardDatasource)
			}
			for _, q := range p.Targets {
				if q.Datasource != dashboardDatasource {
					t.Errorf("%s: a query of data source %+v", where, q.Datasource)
				}
				check(where, q.Expr)
			}
		}
	}
	walk(d.Panels)

	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q, want label_values(selector, label)", v.Name, q.Query)
			continue
		}
		check("variable "+v.Name, withLabel(m[1], m[2]))
	}

	// What the issue asked for: tasks by phase, steps/s, backlog and oldest message per queue, pool replicas vs
	// desired, claim/complete latency, retries and failures by handler, database reachability, upkeep.
	for _, name := range []string{"tasker_tasks", "tasker_worker_steps_succeeded_total", "tasker_queue_backlog",
		"tasker_queue_oldest_message_age_seconds", "tasker_workerpool_desired_replicas", "tasker_workerpool_ready_replicas",
		"tasker_worker_protocol_call_duration_seconds_bucket", "tasker_worker_steps_retried_total",
		"tasker_worker_steps_failed_total", "tasker_database_metrics_up", "tasker_upkeep_runs_total"} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}
