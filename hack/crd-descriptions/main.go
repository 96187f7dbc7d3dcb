// Command crd-descriptions drops the descriptions at and below one property of a generated CRD, in place (see
// package crddesc for why). Usage: crd-descriptions -property spec.template FILE...
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tasker-operator/tasker-operator/hack/crd-descriptions/crddesc"
)

func main() {
	property := flag.String("property", "", "dot-separated property path from the schema's root, e.g. spec.template")
	flag.Parse()
	if *property == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: crd-descriptions -property spec.template FILE...")
		os.Exit(2)
	}
	for _, file := range flag.Args() {
		doc, err := os.ReadFile(file)
		if err == nil {
			doc, err = crddesc.Strip(doc, strings.Split(*property, "."))
		}
		if err == nil {
			err = os.WriteFile(file, doc, 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "crd-descriptions: %s: %v\n", file, err)
			os.Exit(1)
		}
	}
}
