package main

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
)

func getCmd(g *globals) *cobra.Command {
	var all bool
	printFlags := cli.NewPrintFlags()
	cmd := &cobra.Command{
		Use:   "get [crontasks] [NAME...]",
		Short: "List Tasks (phase, steps done/total, age) or CronTasks (schedule, active, last and next run); or print them (-o yaml, json, name, jsonpath=..., custom-columns=...)",
		Example: "  taskerctl get -A -o wide\n" +
			"  taskerctl get nightly-report -o jsonpath='{.status.phase}'\n" +
			"  taskerctl get -o custom-columns=NAME:.metadata.name,TASKID:.status.taskID\n" +
			"  taskerctl get crontasks -A",
		RunE: func(cmd *cobra.Command, args []string) error {
			printer, err := printFlags.ToPrinter()
			if err != nil {
				return err
			}
			cronTasks := len(args) > 0 && slices.Contains([]string{"crontasks", "crontask", "ctk"}, args[0])
			if cronTasks || len(args) > 0 && slices.Contains([]string{"tasks", "task", "tk"}, args[0]) {
				args = args[1:]
			}
			if all && len(args) > 0 {
				return errors.New("a resource cannot be retrieved by name across all namespaces")
			}
			c, ns, err := g.client()
			if err != nil {
				return err
			}
			if cronTasks {
				return getCronTasks(cmd, c, ns, args, all, printer)
			}
			var items []taskerv1alpha1.Task
			if len(args) > 0 {
				for _, name := range args {
					tk, err := g.getTask(cmd.Context(), c, ns, name)
					if err != nil {
						return err
					}
					items = append(items, *tk)
				}
			} else {
				var list taskerv1alpha1.TaskList
				if err := listSorted(cmd, c, ns, all, &list); err != nil {
					return err
				}
				items = list.Items
			}
			if printer == nil {
				return cli.Table(cmd.OutOrStdout(), items, cli.TableOptions{WithNamespace: all, Wide: printFlags.Wide()}, time.Now())
			}
			obj, err := cli.Objects(scheme, items, len(args) == 1)
			if err != nil {
				return err
			}
			return printer.PrintObj(obj, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List Tasks (or CronTasks) of every namespace.")
	printFlags.AddFlags(cmd)
	return cmd
}

// getCronTasks is `get crontasks`: the named CronTasks, or all of the namespace (of every namespace with -A).
func getCronTasks(cmd *cobra.Command, c client.Client, ns string, names []string, all bool, printer printers.ResourcePrinter) error {
	var items []taskerv1alpha1.CronTask
	if len(names) > 0 {
		for _, name := range names {
			var ct taskerv1alpha1.CronTask
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: name}, &ct); err != nil {
				return err
			}
			items = append(items, ct)
		}
	} else {
		var list taskerv1alpha1.CronTaskList
		if err := listSorted(cmd, c, ns, all, &list); err != nil {
			return err
		}
		items = list.Items
	}
	if printer == nil {
		return cli.CronTaskTable(cmd.OutOrStdout(), items, cli.TableOptions{WithNamespace: all}, time.Now())
	}
	obj, err := cli.Objects(scheme, items, len(names) == 1)
	if err != nil {
		return err
	}
	return printer.PrintObj(obj, cmd.OutOrStdout())
}

// listSorted lists the objects of namespace ns (of every namespace with all) into list, sorted by namespace and
// name.
func listSorted(cmd *cobra.Command, c client.Client, ns string, all bool, list client.ObjectList) error {
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := c.List(cmd.Context(), list, opts...); err != nil {
		return err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	key := func(o runtime.Object) (string, string) {
		m, _ := meta.Accessor(o) // typed objects: always has metadata
		return m.GetNamespace(), m.GetName()
	}
	sort.SliceStable(items, func(i, j int) bool {
		ni, ai := key(items[i])
		nj, aj := key(items[j])
		return ni < nj || ni == nj && ai < aj
	})
	return meta.SetList(list, items)
}
