package packaging

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestUserRolesAreAggregated: kustomize and the chart install the same user-facing ClusterRoles, aggregated into
// Kubernetes' view, edit and admin roles (so a namespace's admins and editors can use tasker with no cluster-wide
// rights); no user role may write status; the chart's can be turned off. test/integration checks them against the
// apiserver's RBAC with impersonated users.
func TestUserRolesAreAggregated(t *testing.T) {
	const prefix = "tasker-"
	kust := kustomizeBuild(t, "config/default")
	chart := renderChart(t, "tasker-system", "", nil)
	want := map[string][]string{
		"user-view": {"rbac.authorization.k8s.io/aggregate-to-view"},
		"user-edit": {"rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-admin"},
	}
	for name, labels := range want {
		k := toTyped[rbacv1.ClusterRole](t, kust.One(t, "ClusterRole", prefix+name).Object)
		c := toTyped[rbacv1.ClusterRole](t, chart.One(t, "ClusterRole", releaseName+"-"+name).Object)
		for _, role := range []*rbacv1.ClusterRole{k, c} {
			for _, l := range labels {
				if role.Labels[l] != "true" {
					t.Errorf("ClusterRole %s lacks label %s=true", role.Name, l)
				}
			}
			for _, r := range role.Rules {
				for _, res := range r.Resources {
					if strings.HasSuffix(res, "/status") || res == "*" {
						for _, v := range r.Verbs {
							if !slices.Contains([]string{"get", "list", "watch"}, v) {
								t.Errorf("ClusterRole %s may %s %s", role.Name, v, res)
							}
						}
					}
				}
			}
		}
		if kp, cp := permissions(k.Rules), permissions(c.Rules); !slices.Equal(kp, cp) {
			t.Errorf("%s: kustomize grants %v, the chart %v", name, kp, cp)
		}
	}
	off := renderChart(t, "tasker-system", "rbac:\n  aggregateToDefaultRoles: false\n", nil)
	for name := range want {
		if n := len(off.Find("ClusterRole", releaseName+"-"+name)); n != 0 {
			t.Errorf("rbac.aggregateToDefaultRoles=false still renders %s", name)
		}
	}
}
