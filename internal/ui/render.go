package ui

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"strings"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
	"github.com/tasker-operator/tasker-operator/internal/stepcounts"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are the page templates, each with the layout (layout.html) and the shared parts (parts.html).
var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"lower":     strings.ToLower,
		"duration":  cli.FormatDuration,
		"clock":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"instant":   func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
		"asset":     func(name string) string { return "/static/" + name + "?v=" + assetVersion },
		"mapLine":   func(c *taskerv1alpha1.StepCounts) string { return stepcounts.Line(*c) },
		"stepsLine": func(c taskerv1alpha1.StepCounts) string { return stepcounts.StepsLine(c) },
		"args": func(name, label, value string, choices []string) selectArgs {
			return selectArgs{Name: name, Label: label, Value: value, Choices: choices}
		},
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	out := map[string]*template.Template{}
	for _, name := range []string{"tasks", "task", "pools", "crontasks", "error"} {
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
}()

// selectArgs are a filter's select (parts.html).
type selectArgs struct {
	Name, Label, Value string
	Choices            []string
}

// page is what the layout needs besides the page's own data.
type page struct {
	Title string
	// Nav is the section of the navigation to mark ("tasks", "pools", "crontasks").
	Nav string
	// Watch says which changes refresh the page (ui.js): "task" for any Task, "task ns/name" for one, "pool",
	// "crontask".
	Watch string
	Data  any
}

// render writes a page, or a plain error when the template fails (a bug: the data is the server's own).
func (s *Server) render(w http.ResponseWriter, name string, status int, p page) {
	var buf bytes.Buffer
	if err := pages[name].Execute(&buf, p); err != nil {
		s.opts.ErrorLog.Printf("render %s: %v", name, err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows a message (safe to show: see Database) on a page of its own.
func (s *Server) renderError(w http.ResponseWriter, status int, title, message string) {
	s.render(w, "error", status, page{Title: title, Data: message})
}
