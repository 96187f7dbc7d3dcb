package main

import (
	"fmt"
	"log"

	"github.com/spf13/cobra"

	"github.com/tasker-operator/tasker-operator/internal/ui"
)

// uiDatabaseConns is the size of the UI's connection pool: a page reads the Task, a step's inputs and history
// one after the other; a few connections let several tabs do so at once.
const uiDatabaseConns = 4

func uiCmd(g *globals) *cobra.Command {
	var address string
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve a read-only web UI: Tasks, their step graphs and steps, WorkerPools (with your credentials)",
		Long: "Serve a read-only web UI on --address (loopback by default) until interrupted: the Task list, each Task's " +
			"step graph with a panel per step, and the WorkerPools with their backlog and replicas. It watches Tasks and " +
			"WorkerPools through the apiserver with your kubeconfig's credentials (the namespace of --namespace or of the " +
			"context; every namespace with -A), and reads step details (results, attempts, inputs) from the tasker " +
			"database when --database-url is given. Nothing is fetched from the network: the assets are in the binary.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config.ToRESTConfig()
			if err != nil {
				return err
			}
			ns, _, err := g.config.ToRawKubeConfigLoader().Namespace()
			if err != nil {
				return err
			}
			if allNamespaces {
				ns = ""
			}
			c := ui.Config{REST: cfg, Scheme: scheme, Namespace: ns, Address: address,
				ErrorLog: log.New(cmd.ErrOrStderr(), "taskerctl ui: ", log.LstdFlags)}
			if g.databaseURL != "" {
				eng, closeDB, err := g.engineConns(cmd.Context(), uiDatabaseConns)
				if err != nil {
					return err
				}
				defer closeDB()
				c.Database = eng
			}
			running, err := ui.Start(cmd.Context(), c)
			if err != nil {
				return err
			}
			where := "namespace " + ns
			if ns == "" {
				where = "all namespaces"
			}
			details := "step details from the database"
			if c.Database == nil {
				details = "no step details: give --database-url for results and attempts"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tasker UI on %s (%s; %s); Ctrl-C stops it\n", running.URL, where, details)
			return running.Wait()
		},
	}
	cmd.Flags().StringVar(&address, "address", "127.0.0.1:8642",
		"Address to listen on (host:port; port 0 picks a free one). Any other than loopback serves your credentials' view to the network.")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "Watch the Tasks and WorkerPools of every namespace.")
	return cmd
}
