package main

import (
	"context"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// completeArgs completes the arguments of a command that takes Task names (all of them when many, else the first)
// and, when steps, a step of that Task as the second: the names are read from the cluster, in the namespace the
// flags select, each request bounded by --request-timeout. Nothing is completed when the cluster cannot be read
// (no error is shown while typing).
func (g *globals) completeArgs(many, steps bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx := cmd.Context()
		var names []string
		switch {
		case len(args) == 0 || many:
			names = g.taskNames(ctx)
			names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(args, n) })
		case len(args) == 1 && steps:
			names = g.stepNames(ctx, args[0])
		}
		out := names[:0]
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func (g *globals) taskNames(ctx context.Context) []string {
	c, ns, err := g.client()
	if err != nil {
		return nil
	}
	var list taskerv1alpha1.TaskList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	names := make([]string, len(list.Items))
	for i := range list.Items {
		names[i] = list.Items[i].Name
	}
	slices.Sort(names)
	return names
}

// stepNames lists a Task's steps: its spec's, or, for a Task made from a template, those its status lists.
func (g *globals) stepNames(ctx context.Context, task string) []string {
	c, ns, err := g.client()
	if err != nil {
		return nil
	}
	tk, err := g.getTask(ctx, c, ns, task)
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range tk.Spec.Steps {
		names = append(names, s.Name)
	}
	for _, s := range tk.Status.Steps {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	return names
}
