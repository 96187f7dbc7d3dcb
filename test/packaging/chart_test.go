package packaging

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tasker-operator/tasker-operator/hack/helm-docs/helmdocs"
)

const (
	fullname      = "tasker-operator" // the release name contains the chart name
	certDir       = "/tmp/k8s-webhook-server/serving-certs"
	certManagerV1 = "cert-manager.io/v1"
)

// chartCase is one set of values the chart is rendered with.
type chartCase struct {
	name        string
	values      string
	apiVersions []string
	// What the case expects.
	dbSecret, dbKey string // the Secret and key of the database URL
	chartDBSecret   bool   // the chart creates that Secret (database.url)
	certManager     bool
	migration       bool
	webhook         bool
	metrics         bool
	crds, keepCRDs  bool // the chart renders the CRDs (crds.enabled), annotated keep (crds.keep)
	replicas        int32
	check           func(t *testing.T, objs Objects)
}

func chartCases() []chartCase {
	base := chartCase{dbSecret: "tasker-database", dbKey: "url", migration: true, webhook: true, metrics: true,
		crds: true, keepCRDs: true, replicas: 1}
	with := func(c chartCase, f func(*chartCase)) chartCase { f(&c); return c }
	return []chartCase{
		with(base, func(c *chartCase) {
			c.name = "defaults"
			c.check = func(t *testing.T, objs Objects) { checkNoMonitoring(t, objs) }
		}),
		with(base, func(c *chartCase) {
			c.name = "existing-secret"
			c.values = "database: {existingSecret: pg-operator, existingSecretKey: dsn, maxConns: 4}"
			c.dbSecret, c.dbKey = "pg-operator", "dsn"
		}),
		with(base, func(c *chartCase) {
			c.name = "database-url"
			c.values = `
database: {url: "postgres://tasker_operator:secret@postgres.db:5432/tasker?sslmode=require"}
workerDatabaseSecrets:
  - {name: orders-worker-db, namespace: tasker-apps, url: "postgres://worker_orders:pw@postgres.db/tasker"}
  - {name: reports-worker-db, url: "postgres://worker_reports:pw@postgres.db/tasker"}`
			c.dbSecret, c.chartDBSecret = fullname+"-database", true
			c.check = func(t *testing.T, objs Objects) {
				s := toTyped[corev1.Secret](t, objs.One(t, "Secret", "orders-worker-db").Object)
				if s.Namespace != "tasker-apps" || string(s.Data["url"]) == "" {
					t.Errorf("worker Secret: %+v", s)
				}
				objs.One(t, "Secret", "reports-worker-db")
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "cert-manager-values"
			c.values = "webhook: {certificate: {mode: cert-manager, certManager: {issuerRef: {kind: ClusterIssuer, name: corp-ca}}}}"
			c.certManager = true
			c.check = func(t *testing.T, objs Objects) {
				if n := len(objs.Find("Issuer", "")); n != 0 {
					t.Errorf("with an issuerRef the chart must not create an Issuer, found %d", n)
				}
				ref, _, _ := unstructured.NestedStringMap(objs.One(t, "Certificate", fullname+"-webhook").Object, "spec", "issuerRef")
				if ref["kind"] != "ClusterIssuer" || ref["name"] != "corp-ca" {
					t.Errorf("Certificate issuerRef = %v", ref)
				}
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "cert-manager-detected"
			c.apiVersions = []string{certManagerV1}
			c.certManager = true
			c.check = func(t *testing.T, objs Objects) {
				objs.One(t, "Issuer", fullname+"-selfsigned")
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "network-policy-service-monitor"
			c.values = `
networkPolicy:
  enabled: true
  egress:
    - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}, {port: 5432, protocol: TCP}, {port: 443, protocol: TCP}]
metrics:
  serviceMonitor: {enabled: true, labels: {release: prometheus}, scrapeTimeout: 10s}
  readerSubjects: [{kind: ServiceAccount, name: prometheus-k8s, namespace: monitoring}]`
			c.check = func(t *testing.T, objs Objects) {
				np := toTyped[networkingv1.NetworkPolicy](t, objs.One(t, "NetworkPolicy", fullname).Object)
				if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.Ingress) != 2 {
					t.Errorf("NetworkPolicy: %+v", np.Spec)
				}
				sm := objs.One(t, "ServiceMonitor", fullname)
				sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
				metricsSvc := toTyped[corev1.Service](t, objs.One(t, "Service", fullname+"-metrics").Object)
				if !selects(sel, metricsSvc.Labels) || selects(sel, objs.One(t, "Service", fullname+"-webhook").GetLabels()) {
					t.Errorf("ServiceMonitor selector %v must select the metrics Service only", sel)
				}
				b := toTyped[rbacv1.ClusterRoleBinding](t, objs.One(t, "ClusterRoleBinding", fullname+"-metrics-reader").Object)
				if b.RoleRef.Name != fullname+"-metrics-reader" || len(b.Subjects) != 1 {
					t.Errorf("metrics-reader binding: %+v", b)
				}
				checkScraper(t, objs, sm, fullname+"-metrics-scraper", fullname+"-metrics-reader")
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "replicas-2"
			c.values = "replicaCount: 2"
			c.replicas = 2
			c.check = func(t *testing.T, objs Objects) {
				pdb := toTyped[policyv1.PodDisruptionBudget](t, objs.One(t, "PodDisruptionBudget", fullname).Object)
				if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
					t.Errorf("PDB minAvailable = %v", pdb.Spec.MinAvailable)
				}
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "shared-queues"
			c.values = "sharedQueues: [{name: gpu, namespaces: [ml-train, ml-serve]}, {name: audit}]"
			c.check = func(t *testing.T, objs Objects) {
				dep := toTyped[appsv1.Deployment](t, objs.One(t, "Deployment", fullname).Object)
				args := dep.Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--shared-queue=gpu=ml-train,ml-serve", "--shared-queue=audit"} {
					if !slices.Contains(args, want) {
						t.Errorf("manager args %v: want %s", args, want)
					}
				}
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "alerts-dashboard"
			c.values = `
metrics:
  prometheusRule: {enabled: true, labels: {release: prometheus}}
  dashboard: {enabled: true, namespace: grafana, labels: {grafana_dashboard: "1", team: data}, annotations: {grafana_folder: Tasker}}`
			c.check = func(t *testing.T, objs Objects) {
				rule := objs.One(t, "PrometheusRule", fullname)
				if rule.GetLabels()["release"] != "prometheus" || rule.GetLabels()["app.kubernetes.io/instance"] != releaseName {
					t.Errorf("PrometheusRule labels %v", rule.GetLabels())
				}
				checkRulesFromSource(t, rule)
				cm := toTyped[corev1.ConfigMap](t, objs.One(t, "ConfigMap", fullname+"-dashboard").Object)
				if cm.Namespace != "grafana" || cm.Labels["grafana_dashboard"] != "1" || cm.Labels["team"] != "data" ||
					cm.Annotations["grafana_folder"] != "Tasker" {
					t.Errorf("dashboard ConfigMap %s/%s labels %v annotations %v", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
				}
				checkDashboardFromSource(t, cm.Data)
			}
		}),
		with(base, func(c *chartCase) {
			c.name = "alerts-dashboard-metrics-off"
			c.values = "metrics: {enabled: false, prometheusRule: {enabled: true}, dashboard: {enabled: true}}"
			c.metrics = false
			c.check = func(t *testing.T, objs Objects) { checkNoMonitoring(t, objs) }
		}),
		with(base, func(c *chartCase) {
			c.name = "crds-not-kept"
			c.values = "crds: {keep: false}"
			c.keepCRDs = false
		}),
		with(base, func(c *chartCase) {
			c.name = "crds-disabled"
			c.values = "crds: {enabled: false}"
			c.crds, c.keepCRDs = false, false
		}),
		with(base, func(c *chartCase) {
			c.name = "minimal"
			c.values = "{migration: {enabled: false}, webhook: {enabled: false}, metrics: {enabled: false}}"
			c.migration, c.webhook, c.metrics = false, false, false
			c.check = func(t *testing.T, objs Objects) {
				for _, kind := range []string{"Service", "ValidatingWebhookConfiguration", "Job"} {
					if n := len(objs.Find(kind, "")); n != 0 {
						t.Errorf("%d %s rendered", n, kind)
					}
				}
			}
		}),
	}
}

// TestChartRenders renders the chart with each value set and checks the result against the apiserver and the
// rules every install must follow.
func TestChartRenders(t *testing.T) {
	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			ns := "tasker-" + tc.name
			objs := renderChart(t, ns, tc.values, nil, tc.apiVersions...)
			dryRunApply(t, objs)

			for _, obj := range objs {
				if obj.GetKind() == "CustomResourceDefinition" || strings.HasPrefix(obj.GetKind(), "Cluster") ||
					obj.GetKind() == "ValidatingWebhookConfiguration" {
					continue
				}
				if obj.GetNamespace() == "" {
					t.Errorf("%s %s has no namespace", obj.GetKind(), obj.GetName())
				}
			}
			checkChartCRDs(t, objs, tc)
			checkManagerRole(t, objs, fullname+"-manager", ns, fullname)
			specs := checkPodSecurity(t, objs)

			dep := toTyped[appsv1.Deployment](t, objs.One(t, "Deployment", fullname).Object)
			manager := specs["Deployment/"+fullname]
			if r := dep.Spec.Replicas; r == nil || *r != tc.replicas {
				t.Errorf("replicas = %v, want %d", r, tc.replicas)
			}
			mc := container(t, manager, "manager")
			if v, _ := argValue(mc.Args, "leader-elect"); v != "true" {
				t.Errorf("manager args %v lack --leader-elect", mc.Args)
			}
			if ref := envSecretRef(t, mc, "TASKER_DATABASE_URL"); ref.Name != tc.dbSecret || ref.Key != tc.dbKey {
				t.Errorf("manager reads the database URL from %s/%s, want %s/%s", ref.Name, ref.Key, tc.dbSecret, tc.dbKey)
			}
			if _, skip := argValue(mc.Args, "skip-migrations"); skip != tc.migration {
				t.Errorf("--skip-migrations in %v: %v, want %v (the hook Job migrates)", mc.Args, skip, tc.migration)
			}
			checkChartDatabaseSecret(t, objs, tc)
			var job *corev1.PodTemplateSpec
			if tc.migration {
				job = checkMigrationJob(t, objs, specs, tc)
			}
			checkServicesSelectManager(t, objs, manager, job)
			if tc.webhook {
				checkChartWebhook(t, objs, ns, manager, tc.certManager)
			} else if v := envValue(mc, "ENABLE_WEBHOOKS"); v != "false" {
				t.Errorf("webhooks off, but ENABLE_WEBHOOKS=%q", v)
			}
			checkChartMetrics(t, objs, mc, tc.metrics)
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

// checkChartCRDs: with crds.enabled the chart renders the CRDs of config/crd/bases, their schemas unchanged by the
// template, labelled as the release's, and annotated helm.sh/resource-policy: keep exactly when crds.keep is on;
// without it, none.
func checkChartCRDs(t *testing.T, objs Objects, tc chartCase) {
	t.Helper()
	rendered := objs.Find("CustomResourceDefinition", "")
	if !tc.crds {
		if len(rendered) != 0 {
			t.Errorf("crds.enabled is false, but %d CRDs were rendered", len(rendered))
		}
		return
	}
	bases, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	if len(rendered) != len(bases) {
		t.Errorf("%d CRDs rendered, %d in config/crd/bases", len(rendered), len(bases))
	}
	for _, b := range bases {
		source := parseObjects(t, b, readRepoFile(t, filepath.Join("config", "crd", "bases", filepath.Base(b))))[0]
		crd := objs.One(t, "CustomResourceDefinition", source.GetName())
		if !reflect.DeepEqual(crd.Object["spec"], source.Object["spec"]) {
			t.Errorf("CRD %s: the rendered spec differs from config/crd/bases/%s", crd.GetName(), filepath.Base(b))
		}
		ann := crd.GetAnnotations()
		if policy, want := ann["helm.sh/resource-policy"], map[bool]string{true: "keep"}[tc.keepCRDs]; policy != want {
			t.Errorf("CRD %s: helm.sh/resource-policy %q, want %q", crd.GetName(), policy, want)
		}
		if v := source.GetAnnotations()["controller-gen.kubebuilder.io/version"]; ann["controller-gen.kubebuilder.io/version"] != v {
			t.Errorf("CRD %s lost its controller-gen annotation: %v", crd.GetName(), ann)
		}
		if l := crd.GetLabels(); l["app.kubernetes.io/managed-by"] != "Helm" || l["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("CRD %s: labels %v, want the release's", crd.GetName(), l)
		}
	}
}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func checkChartDatabaseSecret(t *testing.T, objs Objects, tc chartCase) {
	t.Helper()
	found := objs.Find("Secret", fullname+"-database")
	if !tc.chartDBSecret {
		if len(found) != 0 {
			t.Error("the chart created a database Secret without database.url")
		}
		return
	}
	if len(found) != 1 {
		t.Fatalf("database.url set but no Secret %s-database", fullname)
	}
	s := toTyped[corev1.Secret](t, found[0].Object)
	if !strings.HasPrefix(string(s.Data["url"]), "postgres://") {
		t.Errorf("database Secret url = %q", s.Data["url"])
	}
	// The Secret must exist before the migration hook runs: a hook with a lower weight.
	if s.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || hookWeight(t, found[0]) >= hookWeight(t, objs.One(t, "Job", fullname+"-migrate")) {
		t.Errorf("database Secret must be a pre-install,pre-upgrade hook weighted before the migration Job: %v", s.Annotations)
	}
}

func hookWeight(t *testing.T, obj *unstructured.Unstructured) int {
	t.Helper()
	w, err := strconv.Atoi(obj.GetAnnotations()["helm.sh/hook-weight"])
	if err != nil {
		t.Fatalf("%s %s: hook weight: %v", obj.GetKind(), obj.GetName(), err)
	}
	return w
}

// checkMigrationJob: a pre-install/pre-upgrade hook running --migrate-only with the manager's image and database
// URL, retried a bounded number of times (so that a failing migration fails the release).
func checkMigrationJob(t *testing.T, objs Objects, specs map[string]*corev1.PodTemplateSpec, tc chartCase) *corev1.PodTemplateSpec {
	t.Helper()
	obj := objs.One(t, "Job", fullname+"-migrate")
	job := toTyped[batchv1.Job](t, obj.Object)
	ann := job.Annotations
	if ann["helm.sh/hook"] != "pre-install,pre-upgrade" {
		t.Errorf("migration Job hook = %q", ann["helm.sh/hook"])
	}
	if !strings.Contains(ann["helm.sh/hook-delete-policy"], "before-hook-creation") {
		t.Errorf("migration Job hook-delete-policy = %q", ann["helm.sh/hook-delete-policy"])
	}
	hookWeight(t, obj)
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit < 0 || job.Spec.ActiveDeadlineSeconds == nil {
		t.Errorf("migration Job needs backoffLimit and activeDeadlineSeconds: %+v", job.Spec)
	}
	tmpl := specs["Job/"+fullname+"-migrate"]
	if tmpl.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("migration Pod restartPolicy = %q", tmpl.Spec.RestartPolicy)
	}
	if tmpl.Spec.AutomountServiceAccountToken == nil || *tmpl.Spec.AutomountServiceAccountToken {
		t.Error("the migration Pod must not mount an API token")
	}
	c := container(t, tmpl, "migrate")
	if v, _ := argValue(c.Args, "migrate-only"); v != "true" {
		t.Errorf("migration args %v lack --migrate-only", c.Args)
	}
	mc := container(t, specs["Deployment/"+fullname], "manager")
	if c.Image != mc.Image || !slices.Equal(c.Command, mc.Command) {
		t.Errorf("migration Job runs %s %v, the manager %s %v", c.Image, c.Command, mc.Image, mc.Command)
	}
	if ref := envSecretRef(t, c, "TASKER_DATABASE_URL"); ref.Name != tc.dbSecret || ref.Key != tc.dbKey {
		t.Errorf("migration Job reads the database URL from %s/%s, want %s/%s", ref.Name, ref.Key, tc.dbSecret, tc.dbKey)
	}
	return tmpl
}

// checkChartWebhook: the webhooks are config/webhook/manifests.yaml's, pointed at the chart's Service, whose
// certificate the manager mounts, trusted by the caBundle (self-signed) or cert-manager's CA injection.
func checkChartWebhook(t *testing.T, objs Objects, ns string, manager *corev1.PodTemplateSpec, certManager bool) {
	t.Helper()
	vwc := toTyped[admissionv1.ValidatingWebhookConfiguration](t, objs.One(t, "ValidatingWebhookConfiguration", fullname+"-validating").Object)
	generated := toTyped[admissionv1.ValidatingWebhookConfiguration](t,
		parseObjects(t, "config/webhook/manifests.yaml", readRepoFile(t, "config/webhook/manifests.yaml")).
			One(t, "ValidatingWebhookConfiguration", "validating-webhook-configuration").Object)
	if len(vwc.Webhooks) != len(generated.Webhooks) {
		t.Fatalf("%d webhooks rendered, %d generated", len(vwc.Webhooks), len(generated.Webhooks))
	}
	svcName := fullname + "-webhook"
	var caBundle []byte
	for i, w := range vwc.Webhooks {
		g := generated.Webhooks[i]
		s := w.ClientConfig.Service
		if w.Name != g.Name || s == nil || s.Path == nil || g.ClientConfig.Service.Path == nil ||
			*s.Path != *g.ClientConfig.Service.Path || s.Name != svcName || s.Namespace != ns {
			t.Errorf("webhook %d = %s %+v, want %s at %s/%s", i, w.Name, s, g.Name, ns, svcName)
		}
		wr, gr := w.Rules, g.Rules
		if len(wr) != len(gr) || (len(wr) > 0 && (!slices.Equal(wr[0].Resources, gr[0].Resources) || !slices.Equal(wr[0].Operations, gr[0].Operations))) {
			t.Errorf("webhook %s rules %+v, generated %+v", w.Name, wr, gr)
		}
		if i == 0 {
			caBundle = w.ClientConfig.CABundle
		} else if !bytes.Equal(caBundle, w.ClientConfig.CABundle) {
			t.Error("the webhooks have different caBundles")
		}
	}
	svc := toTyped[corev1.Service](t, objs.One(t, "Service", svcName).Object)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
		t.Errorf("webhook Service ports %+v", svc.Spec.Ports)
	}

	// The manager mounts the certificate Secret where --webhook-cert-dir points.
	mc := container(t, manager, "manager")
	if dir, _ := argValue(mc.Args, "webhook-cert-dir"); dir != certDir {
		t.Errorf("--webhook-cert-dir = %q", dir)
	}
	var secretName string
	for _, m := range mc.VolumeMounts {
		if m.MountPath == certDir {
			for _, v := range manager.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					secretName = v.Secret.SecretName
				}
			}
		}
	}
	if secretName == "" {
		t.Fatalf("the manager mounts no Secret at %s", certDir)
	}
	dnsName := svcName + "." + ns + ".svc"

	if certManager {
		if len(caBundle) != 0 {
			t.Error("with cert-manager the caBundle is injected, not rendered")
		}
		certName := fullname + "-webhook"
		if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != ns+"/"+certName {
			t.Errorf("cert-manager.io/inject-ca-from = %q, want %s/%s", got, ns, certName)
		}
		cert := objs.One(t, "Certificate", certName)
		sn, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if sn != secretName || !slices.Contains(dns, dnsName) {
			t.Errorf("Certificate secretName %q dnsNames %v; the manager mounts %q, the Service is %s", sn, dns, secretName, dnsName)
		}
		if len(objs.Find("Secret", secretName)) != 0 {
			t.Error("with cert-manager the chart must not render the certificate Secret")
		}
		return
	}
	if vwc.Annotations["cert-manager.io/inject-ca-from"] != "" {
		t.Error("self-signed certificate, but the webhook asks for cert-manager CA injection")
	}
	secret := toTyped[corev1.Secret](t, objs.One(t, "Secret", secretName).Object)
	if !bytes.Equal(secret.Data["ca.crt"], caBundle) {
		t.Error("the webhook's caBundle is not the Secret's ca.crt")
	}
	verifyServingCert(t, secret.Data["tls.crt"], caBundle, dnsName)
}

func verifyServingCert(t *testing.T, certPEM, caPEM []byte, dnsName string) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("caBundle holds no certificate")
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("tls.crt holds no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, CurrentTime: time.Now().Add(365 * 24 * time.Hour)}); err != nil {
		t.Errorf("serving certificate does not verify for %s against the caBundle (in a year's time): %v", dnsName, err)
	}
}

func checkChartMetrics(t *testing.T, objs Objects, mc *corev1.Container, enabled bool) {
	t.Helper()
	addr, _ := argValue(mc.Args, "metrics-bind-address")
	if !enabled {
		if addr != "0" {
			t.Errorf("metrics off, but --metrics-bind-address=%q", addr)
		}
		return
	}
	if addr != ":8443" {
		t.Errorf("--metrics-bind-address = %q", addr)
	}
	if v, _ := argValue(mc.Args, "metrics-secure"); v != "true" {
		t.Errorf("--metrics-secure = %q, want true by default", v)
	}
	svc := toTyped[corev1.Service](t, objs.One(t, "Service", fullname+"-metrics").Object)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].Name != "https" {
		t.Errorf("metrics Service ports %+v", svc.Spec.Ports)
	}
	// Secure metrics: the manager may create TokenReviews and SubjectAccessReviews.
	auth := toTyped[rbacv1.ClusterRole](t, objs.One(t, "ClusterRole", fullname+"-metrics-auth").Object)
	got := permissions(auth.Rules)
	want := []string{"authentication.k8s.io/tokenreviews/* create", "authorization.k8s.io/subjectaccessreviews/* create"}
	if !slices.Equal(got, want) {
		t.Errorf("metrics-auth permissions %v, want %v", got, want)
	}
	objs.One(t, "ClusterRole", fullname+"-metrics-reader")
}

// checkNoMonitoring: no alerts and no dashboard (off by default, and without metrics there is nothing to show).
func checkNoMonitoring(t *testing.T, objs Objects) {
	t.Helper()
	if n := len(objs.Find("PrometheusRule", "")) + len(objs.Find("ConfigMap", fullname+"-dashboard")); n != 0 {
		t.Errorf("%d PrometheusRule or dashboard ConfigMap rendered", n)
	}
}

// TestChartSelfSignedCertificateSurvivesUpgrade: with lookup reading the cluster (as `helm upgrade` does), a
// second render reuses the CA and certificate of the first instead of generating new ones.
func TestChartSelfSignedCertificateSurvivesUpgrade(t *testing.T) {
	ns := "tasker-upgrade"
	ensureNamespace(t, ns)
	first := renderChart(t, ns, "", restConfig)
	secret := first.One(t, "Secret", fullname+"-webhook-cert").DeepCopy()
	if err := k8sClient.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	second := renderChart(t, ns, "", restConfig)
	want, _, _ := unstructured.NestedStringMap(secret.Object, "data")
	got, _, _ := unstructured.NestedStringMap(second.One(t, "Secret", fullname+"-webhook-cert").Object, "data")
	if want["tls.crt"] != got["tls.crt"] || want["ca.crt"] != got["ca.crt"] || want["tls.key"] != got["tls.key"] {
		t.Error("an upgrade generated a new webhook certificate instead of reusing the installed one")
	}
	vwc := toTyped[admissionv1.ValidatingWebhookConfiguration](t, second.One(t, "ValidatingWebhookConfiguration", fullname+"-validating").Object)
	if base64.StdEncoding.EncodeToString(vwc.Webhooks[0].ClientConfig.CABundle) != want["ca.crt"] {
		t.Error("after an upgrade the caBundle is not the installed CA")
	}
}

// TestChartCopiesAreCurrent: the chart's copies of generated files (CRDs, the manager's ClusterRole, the webhook
// configuration) and of config/prometheus' alerts and dashboard equal their sources, and the README's values
// table matches values.yaml.
func TestChartCopiesAreCurrent(t *testing.T) {
	bases, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	copies, _ := filepath.Glob(filepath.Join(chartDir(), "files", "crds", "*.yaml"))
	if len(copies) != len(bases) {
		t.Errorf("%d CRDs in the chart, %d in config/crd/bases: run make manifests", len(copies), len(bases))
	}
	pairs := map[string]string{
		"files/manager-role.yaml":      "config/rbac/role.yaml",
		"files/webhook-manifests.yaml": "config/webhook/manifests.yaml",
		"files/aggregate-roles.yaml":   "config/rbac/aggregate_roles.yaml",
		"files/prometheus-rules.yaml":  "config/prometheus/rules.yaml",
		"files/grafana-dashboard.json": "config/prometheus/grafana-dashboard.json",
	}
	for _, b := range bases {
		pairs["files/crds/"+filepath.Base(b)] = "config/crd/bases/" + filepath.Base(b)
	}
	for copyPath, source := range pairs {
		copyData, err := os.ReadFile(filepath.Join(chartDir(), copyPath))
		if err != nil {
			t.Errorf("%v: run make manifests", err)
			continue
		}
		sourceData := readRepoFile(t, source)
		// JSON has no comments: a JSON copy has no header.
		same := equalIgnoringHeader(copyData, sourceData)
		if filepath.Ext(copyPath) == ".json" {
			same = bytes.Equal(copyData, sourceData)
		}
		if !same {
			t.Errorf("charts/tasker-operator/%s differs from %s: run make manifests", copyPath, source)
		}
	}

	current, want, err := helmdocs.Render(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	if current != want {
		t.Error("charts/tasker-operator/README.md's values table is stale: run make helm-docs")
	}
}

// TestChartLints: Helm's own linter (what `helm lint --strict` runs) finds nothing to warn about, with the default
// values and with each CRD option.
func TestChartLints(t *testing.T) {
	for _, values := range []string{"", "crds: {keep: false}", "crds: {enabled: false}",
		"metrics: {prometheusRule: {enabled: true}, dashboard: {enabled: true}}"} {
		vals, err := chartutil.ReadValues([]byte(values))
		if err != nil {
			t.Fatal(err)
		}
		linter := lint.All(chartDir(), vals, "tasker-lint", true)
		for _, m := range linter.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint with values %q: %s", values, m)
			}
		}
	}
}

// TestChartRejectsBadValues: values the chart cannot work with fail the render with a message, rather than
// producing a broken install.
func TestChartRejectsBadValues(t *testing.T) {
	for name, tc := range map[string]struct{ values, message string }{
		// values.schema.json: unknown keys (typos), wrong types and values outside a set fail before rendering.
		"certificate-mode":  {"webhook: {certificate: {mode: letsencrypt}}", "'/webhook/certificate/mode': value must be one of"},
		"typo":              {"replicaCont: 2", "replicaCont"},
		"nested-typo":       {"database: {existingSecretKy: url}", "existingSecretKy"},
		"wrong-type":        {"replicaCount: two", "replicaCount"},
		"log-level":         {"logLevel: verbose", "logLevel"},
		"port-range":        {"metrics: {port: 70000}", "'/metrics/port': maximum"},
		"no-database":       {"database: {existingSecret: ''}", "database.existingSecret or database.url is required"},
		"no-sa-name":        {"serviceAccount: {create: false}", "serviceAccount.name is required"},
		"shared-queue-name": {"sharedQueues: [{name: GPU}]", "'/sharedQueues/0/name'"},
		"shared-queue-key":  {"sharedQueues: [{name: gpu, namespace: [a]}]", "namespace"},
		"crds-typo":         {"crds: {keeep: false}", "keeep"},
		"dashboard-typo":    {"metrics: {dashboard: {enable: true}}", "enable"},
		"rule-label-type":   {"metrics: {prometheusRule: {labels: {severity: 1}}}", "'/metrics/prometheusRule/labels/severity'"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := renderChartFiles("tasker-bad", tc.values, nil)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("render error = %v, want one containing %q", err, tc.message)
			}
		})
	}
}

// Every value a template reads is allowed by values.schema.json (its objects are closed: a value the schema does
// not list would be refused at install, even though a template uses it).
func TestChartSchemaAllowsEveryValueTheTemplatesRead(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		Properties map[string]*node `json:"properties"`
	}
	var schema node
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	templates, err := filepath.Glob(filepath.Join(chartDir(), "templates", "*"))
	if err != nil || len(templates) == 0 {
		t.Fatalf("templates: %v", err)
	}
	ref := regexp.MustCompile(`\.Values((?:\.[A-Za-z0-9_]+)+)`)
	for _, f := range templates {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			n := &schema
			for _, key := range strings.Split(strings.TrimPrefix(m[1], "."), ".") {
				if n.Properties == nil { // a free-form value: anything below it is allowed
					break
				}
				if n = n.Properties[key]; n == nil {
					t.Errorf("%s reads .Values%s, which values.schema.json does not allow", filepath.Base(f), m[1])
					break
				}
			}
		}
	}
}
