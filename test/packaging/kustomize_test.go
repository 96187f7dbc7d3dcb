package packaging

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestKustomizeDefault builds config/default (what `make build-installer` renders into dist/install.yaml) and
// checks it against the apiserver and the install rules.
func TestKustomizeDefault(t *testing.T) {
	const ns, prefix = "tasker-system", "tasker-"
	objs := kustomizeBuild(t, "config/default")
	dryRunApply(t, objs)

	nsObj := objs.One(t, "Namespace", ns)
	if nsObj.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", ns)
	}
	for _, obj := range objs {
		if !strings.HasPrefix(obj.GetName(), prefix) && obj.GetKind() != "CustomResourceDefinition" {
			t.Errorf("%s %s is not prefixed %q", obj.GetKind(), obj.GetName(), prefix)
		}
		switch obj.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration":
		default:
			if obj.GetNamespace() != ns {
				t.Errorf("%s %s is in namespace %q, want %s", obj.GetKind(), obj.GetName(), obj.GetNamespace(), ns)
			}
		}
	}
	if n, want := len(objs.Find("CustomResourceDefinition", "")), crdCount(t); n != want {
		t.Errorf("%d CRDs, want %d (config/crd/bases)", n, want)
	}
	checkManagerRole(t, objs, prefix+"manager-role", ns, prefix+"controller-manager")
	specs := checkPodSecurity(t, objs)
	manager := specs["Deployment/"+prefix+"controller-manager"]
	if manager == nil {
		t.Fatalf("no manager Deployment among %v", objs)
	}
	mc := container(t, manager, "manager")
	if v, _ := argValue(mc.Args, "leader-elect"); v != "true" {
		t.Errorf("manager args %v lack --leader-elect", mc.Args)
	}
	if ref := envSecretRef(t, mc, "TASKER_DATABASE_URL"); ref.Name != "tasker-database" || ref.Key != "url" {
		t.Errorf("manager reads the database URL from %s/%s, want tasker-database/url", ref.Name, ref.Key)
	}
	if mc.LivenessProbe == nil || mc.LivenessProbe.HTTPGet.Path != "/healthz" || mc.ReadinessProbe == nil ||
		mc.ReadinessProbe.HTTPGet.Path != "/readyz" || mc.LivenessProbe.HTTPGet.Port.IntValue() != 8081 {
		t.Errorf("probes: liveness %+v readiness %+v", mc.LivenessProbe, mc.ReadinessProbe)
	}
	checkServicesSelectManager(t, objs, manager, nil)
	objs.One(t, "Service", prefix+"controller-manager-metrics-service")
	objs.One(t, "ClusterRole", prefix+"metrics-reader")
	auth := objs.One(t, "ClusterRole", prefix+"metrics-auth-role")
	if got := permissions(toTyped[rbacv1.ClusterRole](t, auth.Object).Rules); !slices.Contains(got, "authentication.k8s.io/tokenreviews/* create") {
		t.Errorf("metrics-auth-role grants %v", got)
	}

	// Webhook: cert-manager issues the Service's certificate into the Secret the manager mounts, and injects
	// its CA into the webhook configuration.
	svcName := prefix + "webhook-service"
	vwc := toTyped[admissionv1.ValidatingWebhookConfiguration](t, objs.One(t, "ValidatingWebhookConfiguration", prefix+"validating-webhook-configuration").Object)
	for _, w := range vwc.Webhooks {
		if s := w.ClientConfig.Service; s == nil || s.Name != svcName || s.Namespace != ns {
			t.Errorf("webhook %s calls %+v, want %s/%s", w.Name, s, ns, svcName)
		}
	}
	cert := objs.One(t, "Certificate", prefix+"serving-cert")
	if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != ns+"/"+cert.GetName() {
		t.Errorf("cert-manager.io/inject-ca-from = %q", got)
	}
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if !slices.Equal(dns, []string{svcName + "." + ns + ".svc", svcName + "." + ns + ".svc.cluster.local"}) {
		t.Errorf("Certificate dnsNames = %v", dns)
	}
	issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	objs.One(t, "Issuer", issuer)
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	if dir, _ := argValue(mc.Args, "webhook-cert-dir"); dir != certDir || !mountsSecret(manager, mc, secretName, certDir) {
		t.Errorf("the manager must mount Secret %s at %s and pass --webhook-cert-dir (args %v)", secretName, certDir, mc.Args)
	}
}

func mountsSecret(tmpl *corev1.PodTemplateSpec, c *corev1.Container, secret, path string) bool {
	for _, m := range c.VolumeMounts {
		for _, v := range tmpl.Spec.Volumes {
			if m.MountPath == path && v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret {
				return true
			}
		}
	}
	return false
}

// TestKustomizeOptionalOverlays: the overlays applied beside config/default (ServiceMonitor, alerts and
// dashboard, NetworkPolicies, the GitOps migration Job, the CRDs alone) build and pass a dry run, and select what
// config/default creates.
func TestKustomizeOptionalOverlays(t *testing.T) {
	def := kustomizeBuild(t, "config/default")
	manager := podSpecs(t, def)["Deployment/tasker-controller-manager"]
	metricsSvc := def.One(t, "Service", "tasker-controller-manager-metrics-service")

	t.Run("prometheus", func(t *testing.T) {
		objs := kustomizeBuild(t, "config/prometheus")
		dryRunApply(t, objs)
		sm := objs.One(t, "ServiceMonitor", "tasker-controller-manager-metrics-monitor")
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		if sm.GetNamespace() != "tasker-system" || !selects(sel, metricsSvc.GetLabels()) ||
			selects(sel, def.One(t, "Service", "tasker-webhook-service").GetLabels()) {
			t.Errorf("ServiceMonitor %s/%s selector %v must select the metrics Service only", sm.GetNamespace(), sm.GetName(), sel)
		}
		def.One(t, "ClusterRole", "tasker-metrics-reader")
		checkScraper(t, objs, sm, "tasker-metrics-scraper", "tasker-metrics-reader")
		rule := objs.One(t, "PrometheusRule", "tasker-alerts")
		checkRulesFromSource(t, rule)
		cm := toTyped[corev1.ConfigMap](t, objs.One(t, "ConfigMap", "tasker-grafana-dashboard").Object)
		if cm.Labels["grafana_dashboard"] != "1" || rule.GetNamespace() != "tasker-system" || cm.Namespace != "tasker-system" {
			t.Errorf("dashboard ConfigMap %s/%s labels %v, PrometheusRule in %q", cm.Namespace, cm.Name, cm.Labels,
				rule.GetNamespace())
		}
		checkDashboardFromSource(t, cm.Data)
	})
	t.Run("network-policy", func(t *testing.T) {
		objs := kustomizeBuild(t, "config/network-policy")
		dryRunApply(t, objs)
		if len(objs.Find("NetworkPolicy", "")) != 2 {
			t.Fatalf("want 2 NetworkPolicies, got %v", objs)
		}
		for _, obj := range objs {
			sel, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "podSelector", "matchLabels")
			if obj.GetNamespace() != "tasker-system" || !selects(sel, manager.Labels) {
				t.Errorf("NetworkPolicy %s/%s does not select the manager Pods", obj.GetNamespace(), obj.GetName())
			}
		}
	})
	t.Run("migration", func(t *testing.T) {
		objs := kustomizeBuild(t, "config/migration")
		dryRunApply(t, objs)
		specs := checkPodSecurity(t, objs)
		job := specs["Job/tasker-migrate"]
		if job == nil {
			t.Fatalf("no Job tasker-migrate in %v", objs)
		}
		c := container(t, job, "migrate")
		mc := container(t, manager, "manager")
		if v, _ := argValue(c.Args, "migrate-only"); v != "true" || c.Image != mc.Image {
			t.Errorf("migration Job runs %s %v; want the manager's image %s with --migrate-only", c.Image, c.Args, mc.Image)
		}
		if ref := envSecretRef(t, c, "TASKER_DATABASE_URL"); ref.Name != "tasker-database" || ref.Key != "url" {
			t.Errorf("migration Job reads the database URL from %s/%s", ref.Name, ref.Key)
		}
		if objs[0].GetAnnotations()["argocd.argoproj.io/hook"] != "PreSync" {
			t.Error("the migration Job is not an Argo CD PreSync hook")
		}
	})
	t.Run("crd", func(t *testing.T) {
		objs := kustomizeBuild(t, "config/crd")
		dryRunApply(t, objs)
		if want := crdCount(t); len(objs) != want {
			t.Errorf("config/crd has %d objects, want the %d CRDs of config/crd/bases", len(objs), want)
		}
	})
}

// crdCount is the number of CRDs controller-gen generated (config/crd/bases): every one must ship.
func crdCount(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	return len(files)
}
