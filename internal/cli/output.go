package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	kubectlget "k8s.io/kubectl/pkg/cmd/get"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"
)

// FormatWide is the -o value that prints the table with its extra columns (see TableOptions.Wide).
const FormatWide = "wide"

// PrintFlags are the -o formats of `taskerctl get`, kubectl's: json, yaml, kyaml, name, go-template[-file],
// jsonpath[-file|-as-json] (cli-runtime's printers, with their --template, --allow-missing-template-keys and
// --show-managed-fields flags) and custom-columns[-file] (kubectl's printer) print the objects themselves; the
// default (no -o) and "wide" print Table.
type PrintFlags struct {
	generic *genericclioptions.PrintFlags
	columns *kubectlget.CustomColumnsPrintFlags
}

// NewPrintFlags returns get's print flags, with the table as the default output.
func NewPrintFlags() *PrintFlags {
	return &PrintFlags{generic: genericclioptions.NewPrintFlags(""), columns: kubectlget.NewCustomColumnsPrintFlags()}
}

// AddFlags adds -o/--output and the printers' own flags to cmd, and completes -o's values.
func (f *PrintFlags) AddFlags(cmd *cobra.Command) {
	f.generic.AddFlags(cmd)
	f.columns.AddFlags(cmd)
	// The generic flags describe only their own formats.
	cmd.Flags().Lookup("output").Usage = fmt.Sprintf("Output format. One of: (%s). Default: the table.",
		strings.Join(f.AllowedFormats(), ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(f.AllowedFormats(), cobra.ShellCompDirectiveNoFileComp))
}

// AllowedFormats lists the values of -o, sorted.
func (f *PrintFlags) AllowedFormats() []string {
	formats := append(f.generic.AllowedFormats(), f.columns.AllowedFormats()...)
	formats = append(formats, FormatWide)
	slices.Sort(formats)
	return formats
}

// Wide tells whether -o wide was given.
func (f *PrintFlags) Wide() bool { return *f.generic.OutputFormat == FormatWide }

// ToPrinter returns the printer of the objects for -o, nil when the table is to be printed (no -o, or wide), or
// kubectl's error naming the allowed formats for an unknown one.
func (f *PrintFlags) ToPrinter() (printers.ResourcePrinter, error) {
	format := *f.generic.OutputFormat
	template := f.generic.TemplatePrinterFlags.TemplateArgument
	if format == FormatWide || format == "" && (template == nil || *template == "") {
		return nil, nil
	}
	if p, err := f.generic.ToPrinter(); !genericclioptions.IsNoCompatiblePrinterError(err) {
		return p, err
	}
	if p, err := f.columns.ToPrinter(format); !genericclioptions.IsNoCompatiblePrinterError(err) {
		return p, err
	}
	return nil, genericclioptions.NoCompatiblePrinterError{OutputFormat: &format, AllowedFormats: f.AllowedFormats()}
}

// Objects composes what `get -o` prints, as kubectl does: the object itself (a Task, a CronTask) when one was
// asked for by name (single), else a v1 List (kind List, apiVersion v1) of all of them, even of one or none. It
// sets each object's apiVersion and kind from scheme, which the printers need and a typed client leaves unset.
func Objects[T any, PT interface {
	*T
	client.Object
}](scheme *runtime.Scheme, items []T, single bool) (runtime.Object, error) {
	for i := range items {
		obj := PT(&items[i])
		gvk, err := apiutil.GVKForObject(obj, scheme)
		if err != nil {
			return nil, err
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
	}
	if single && len(items) == 1 {
		return PT(&items[0]), nil
	}
	list := &unstructured.UnstructuredList{Object: map[string]any{
		"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""},
	}}
	for i := range items {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&items[i])
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, unstructured.Unstructured{Object: content})
	}
	return list, nil
}

// ViewFormats are the -o values of describe and history, which print views (TaskView, HistoryEntry) rather
// than objects.
var ViewFormats = []string{"json", "yaml"}

// CheckViewFormat accepts "" (the command's own rendering) and ViewFormats; for anything else it returns the
// same error as get's -o.
func CheckViewFormat(format string) error {
	if format == "" || slices.Contains(ViewFormats, format) {
		return nil
	}
	return genericclioptions.NoCompatiblePrinterError{OutputFormat: &format, AllowedFormats: ViewFormats}
}

// PrintView prints a view as indented JSON or as YAML, by format (one of ViewFormats).
func PrintView(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if err := CheckViewFormat(format); err != nil {
		return err
	}
	return fmt.Errorf("output format %q prints no view", format)
}
