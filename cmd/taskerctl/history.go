package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tasker-operator/tasker-operator/internal/cli"
)

func historyCmd(g *globals) *cobra.Command {
	var width int
	cmd := &cobra.Command{
		Use:   "history NAME [STEP]",
		Short: "Show a Task's transitions from the database: attempts, workers, reasons, errors, times",
		Long: "Show every recorded transition of a Task (and of its steps), oldest first, or of one step. The history " +
			"is in the tasker database: give --database-url (or set TASKER_DATABASE_URL).",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.databaseURL == "" {
				return errors.New("history is read from the tasker database: give --database-url or set TASKER_DATABASE_URL")
			}
			tk, err := g.fetchTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if tk.Status.TaskID == 0 {
				return fmt.Errorf("task %s has not been admitted yet: it has no history", args[0])
			}
			step := ""
			if len(args) == 2 {
				step = args[1]
			}
			eng, closeDB, err := g.engine(cmd.Context())
			if err != nil {
				return err
			}
			defer closeDB()
			st, err := eng.GetTask(cmd.Context(), tk.Status.TaskID)
			if err != nil {
				return err
			}
			if err := cli.CheckOwner(tk, st); err != nil {
				return err
			}
			entries, err := eng.History(cmd.Context(), tk.Status.TaskID, step)
			if err != nil {
				return err
			}
			if g.output != "" {
				return cli.PrintView(cmd.OutOrStdout(), g.output, cli.FromHistory(entries))
			}
			return cli.HistoryTable(cmd.OutOrStdout(), cli.FromHistory(entries), width)
		},
	}
	g.addViewOutputFlag(cmd)
	cmd.Flags().IntVar(&width, "width", 160, "Cut long errors to fit about this many columns (0: never).")
	return cmd
}
