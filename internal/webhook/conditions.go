package webhook

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// conditionCheckTimeout bounds the webhook's one query for a Task's conditions (the apiserver waits 10 s for the
// whole review).
const conditionCheckTimeout = 2 * time.Second

// ConditionChecker checks the steps' SQL/JSON path expressions — conditions (`when`) and map paths (`forEach`) —
// as the engine will when it admits them: with PostgreSQL's own parser (engine.Engine.ConditionProblems and
// ForEachProblems), so that the webhook and the engine never disagree.
type ConditionChecker interface {
	// ConditionProblems returns, for each condition, why it cannot be one ("" when it can).
	ConditionProblems(ctx context.Context, conditions []string) ([]string, error)
	// ForEachProblems returns, for each forEach path, why it cannot be one ("" when it can).
	ForEachProblems(ctx context.Context, paths []string) ([]string, error)
}

// checkConditions returns a field error for each step whose condition is not a predicate PostgreSQL can evaluate,
// or whose forEach is not a path it can. When they cannot be checked now (no checker, the database unreachable),
// it returns a warning instead: the engine checks them again at admission, and the Task's Admitted condition then
// names the field.
func checkConditions(ctx context.Context, checker ConditionChecker, stepsPath *field.Path,
	steps []taskerv1alpha1.StepSpec) (field.ErrorList, admission.Warnings) {
	var (
		conds, paths    []string
		condAt, pathsAt []int
	)
	for i := range steps {
		if steps[i].When != "" {
			conds = append(conds, steps[i].When)
			condAt = append(condAt, i)
		}
		if steps[i].ForEach != "" {
			paths = append(paths, steps[i].ForEach)
			pathsAt = append(pathsAt, i)
		}
	}
	if len(conds) == 0 && len(paths) == 0 {
		return nil, nil
	}
	if checker == nil {
		return nil, admission.Warnings{"the steps' expressions (when, forEach) are checked when the operator " +
			"admits the Task"}
	}
	ctx, cancel := context.WithTimeout(ctx, conditionCheckTimeout)
	defer cancel()
	unreachable := admission.Warnings{"the steps' expressions (when, forEach) could not be checked now (the " +
		"database is unreachable); the operator checks them when it admits the Task"}
	var errs field.ErrorList
	for _, kind := range []struct {
		field string
		exprs []string
		at    []int
		check func(context.Context, []string) ([]string, error)
	}{
		{"when", conds, condAt, checker.ConditionProblems},
		{"forEach", paths, pathsAt, checker.ForEachProblems},
	} {
		if len(kind.exprs) == 0 {
			continue
		}
		problems, err := kind.check(ctx, kind.exprs)
		if err != nil {
			return nil, unreachable
		}
		for j, p := range problems {
			if p != "" {
				errs = append(errs, field.Invalid(stepsPath.Index(kind.at[j]).Child(kind.field), kind.exprs[j], p))
			}
		}
	}
	return errs, nil
}

// ConcurrencyKeyChecker checks a concurrency group's key (spec.concurrency.key) as the engine will when it admits
// it (engine.Engine.ConcurrencyKeyProblem). The webhook uses it when its ConditionChecker implements it too.
type ConcurrencyKeyChecker interface {
	// ConcurrencyKeyProblem returns why key cannot be a concurrency key ("" when it can).
	ConcurrencyKeyProblem(ctx context.Context, key string) (string, error)
}

// checkConcurrencyKey returns a field error when c's key is not a SQL/JSON path PostgreSQL can evaluate, or a
// warning when it cannot be checked now (the engine checks it again at admission).
func checkConcurrencyKey(ctx context.Context, checker ConditionChecker, path *field.Path,
	c *taskerv1alpha1.ConcurrencySpec) (field.ErrorList, admission.Warnings) {
	if c == nil || c.Key == "" {
		return nil, nil
	}
	kc, ok := checker.(ConcurrencyKeyChecker)
	if !ok || kc == nil {
		return nil, admission.Warnings{"spec.concurrency.key is checked when the operator admits the Task"}
	}
	ctx, cancel := context.WithTimeout(ctx, conditionCheckTimeout)
	defer cancel()
	p, err := kc.ConcurrencyKeyProblem(ctx, c.Key)
	if err != nil {
		return nil, admission.Warnings{"spec.concurrency.key could not be checked now (the database is unreachable); " +
			"the operator checks it when it admits the Task"}
	}
	if p != "" {
		return field.ErrorList{field.Invalid(path.Child("key"), c.Key, p)}, nil
	}
	return nil, nil
}
