package params

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func raw(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

var reportParams = []taskerv1alpha1.TemplateParameter{
	{Name: "region", Type: taskerv1alpha1.ParameterString, Required: true, Enum: []apiextensionsv1.JSON{*raw(`"eu"`), *raw(`"us"`)}},
	{Name: "days", Type: taskerv1alpha1.ParameterInteger, Default: raw(`7`)},
	{Name: "ratio", Type: taskerv1alpha1.ParameterNumber},
	{Name: "dry_run", Type: taskerv1alpha1.ParameterBoolean, Default: raw(`false`)},
	{Name: "tags", Type: taskerv1alpha1.ParameterArray},
	{Name: "owner", Type: taskerv1alpha1.ParameterObject},
	{Name: "note"}, // type defaults to string
}

func TestResolve(t *testing.T) {
	path := field.NewPath("spec", "arguments")
	for _, tc := range []struct {
		name, args string
		want       string   // the resolved object
		errs       []string // substrings of the errors, in order
	}{
		{name: "defaults fill in", args: `{"region":"eu"}`,
			want: `{"days":7,"dry_run":false,"note":null,"owner":null,"ratio":null,"region":"eu","tags":null}`},
		{name: "every type", args: `{"region":"us","days":30,"ratio":0.5,"dry_run":true,"tags":["a"],"owner":{"team":"x"},"note":"hi"}`,
			want: `{"days":30,"dry_run":true,"note":"hi","owner":{"team":"x"},"ratio":0.5,"region":"us","tags":["a"]}`},
		{name: "missing required", args: `{}`, errs: []string{`spec.arguments[region]: Required value`}},
		{name: "no arguments at all", args: ``, errs: []string{`spec.arguments[region]: Required value`}},
		{name: "unknown argument", args: `{"region":"eu","regoin":"x"}`,
			errs: []string{`spec.arguments[regoin]: Unsupported value: "regoin": supported values: "days", "dry_run", "note", "owner", "ratio", "region", "tags"`}},
		{name: "wrong types", args: `{"region":"eu","days":"7","ratio":"x","dry_run":1,"tags":{},"owner":[],"note":3}`,
			errs: []string{"spec.arguments[days]: Invalid value: \"\\\"7\\\"\": must be an integer", "[ratio]", "must be a number",
				"[dry_run]", "must be a boolean", "[tags]", "must be an array", "[owner]", "must be an object", "[note]", "must be a string"}},
		{name: "not an integer", args: `{"region":"eu","days":1.5}`, errs: []string{"[days]", "must be an integer"}},
		{name: "not in the enum", args: `{"region":"ap"}`, errs: []string{`spec.arguments[region]`, `must be one of "eu", "us"`}},
		{name: "not an object", args: `[1]`, errs: []string{`spec.arguments: Invalid value`, "must be a JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args *apiextensionsv1.JSON
			if tc.args != "" {
				args = raw(tc.args)
			}
			got, errs := Resolve(path, reportParams, args)
			if len(tc.errs) > 0 {
				all := errs.ToAggregate()
				if all == nil {
					t.Fatalf("no error, resolved %s", got)
				}
				rest := all.Error()
				for _, want := range tc.errs {
					i := strings.Index(rest, want)
					if i < 0 {
						t.Fatalf("errors %q lack %q (in order)", all.Error(), want)
					}
					rest = rest[i+len(want):]
				}
				return
			}
			if len(errs) > 0 || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, errs, tc.want)
			}
		})
	}
}

func TestCheckTemplate(t *testing.T) {
	errs := CheckTemplate(field.NewPath("spec", "parameters"), []taskerv1alpha1.TemplateParameter{
		{Name: "ok", Type: taskerv1alpha1.ParameterInteger, Default: raw(`3`), Enum: []apiextensionsv1.JSON{*raw(`3`), *raw(`4`)}},
		{Name: "bad_default", Type: taskerv1alpha1.ParameterBoolean, Default: raw(`"yes"`)},
		{Name: "bad_enum", Enum: []apiextensionsv1.JSON{*raw(`"a"`), *raw(`2`)}},
		{Name: "default_outside_enum", Default: raw(`"c"`), Enum: []apiextensionsv1.JSON{*raw(`"a"`)}},
		{Name: "required_with_default", Required: true, Default: raw(`"x"`)},
	})
	want := []string{
		`spec.parameters[1].default: Invalid value: "\"yes\"": must be a boolean`,
		`spec.parameters[2].enum[1]: Invalid value: "2": must be a string`,
		`spec.parameters[3].default: Invalid value: "\"c\"": must be one of "a"`,
		`spec.parameters[4].default: Forbidden: a required parameter has no default`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %v", errs)
	}
	for i, e := range errs {
		if e.Error() != want[i] {
			t.Errorf("error %d: %s, want %s", i, e.Error(), want[i])
		}
	}
}

func TestContext(t *testing.T) {
	p := field.NewPath("spec", "context")
	got, err := Context(p, []byte(`{"a":1}`), []byte(`{"region":"eu"}`))
	if err != nil || string(got) != `{"a":1,"params":{"region":"eu"}}` {
		t.Errorf("got %s, %v", got, err)
	}
	if got, err := Context(p, nil, []byte(`{}`)); err != nil || string(got) != `{"params":{}}` {
		t.Errorf("empty context: %s, %v", got, err)
	}
	if _, err := Context(p, []byte(`{"params":1}`), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "spec.context.params") {
		t.Errorf("context with params: %v", err)
	}
	if _, err := Context(p, []byte(`[1]`), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "must be a JSON object") {
		t.Errorf("array context: %v", err)
	}
}
