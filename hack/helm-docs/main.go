// Command helm-docs regenerates the values table in a chart's README.md from the "# --" comments of its
// values.yaml (see package helmdocs). Usage: helm-docs [-check] CHART_DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tasker-operator/tasker-operator/hack/helm-docs/helmdocs"
)

func main() {
	check := flag.Bool("check", false, "only report whether README.md is current (exit 1 when not)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-docs [-check] CHART_DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	current, want, err := helmdocs.Render(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-docs:", err)
		os.Exit(1)
	}
	readme := filepath.Join(dir, "README.md")
	switch {
	case current == want:
	case *check:
		fmt.Fprintf(os.Stderr, "helm-docs: %s is stale: run make helm-docs\n", readme)
		os.Exit(1)
	default:
		if err := os.WriteFile(readme, []byte(want), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "helm-docs:", err)
			os.Exit(1)
		}
		fmt.Println("updated", readme)
	}
}
