# tasker-operator Makefile (kubebuilder style).
#
# Tools and the envtest control plane are built from the Go module proxy into a cache OUTSIDE the repository
# (TASKER_CACHE, default ~/.cache/tasker-operator), so every clone on a machine shares them and reruns are fast.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Go 1.26 is what the project builds with; never let go.mod trigger a toolchain download.
export GOTOOLCHAIN := local

TASKER_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tasker-operator
export TASKER_CACHE
TOOLS_BIN := $(TASKER_CACHE)/bin

## Tool versions (pinned).
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
CONTROLLER_GEN ?= $(TOOLS_BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(TOOLS_BIN)/kustomize-$(KUSTOMIZE_VERSION)

# Go test flags; TEST_TIMEOUT bounds one package.
GO_TEST_FLAGS ?=
TEST_TIMEOUT ?= 20m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs, RBAC and webhook configuration from the code's markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:maxDescLen=0,generateEmbeddedObjectMeta=true webhook paths="./api/..." paths="./controllers/..." paths="./internal/webhook/..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify-generated
verify-generated: manifests generate ## Fail if generated files differ from what is committed.
	@if [ -n "$$(git status --porcelain -- api config)" ]; then \
		echo "Generated files are out of date; run 'make manifests generate' and commit:"; \
		git status --porcelain -- api config; git --no-pager diff --stat -- api config; exit 1; fi

.PHONY: verify-fmt
verify-fmt: ## Fail if gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: test
test: envtest-assets python-deps verify-generated verify-fmt vet ## Everything CI runs: provisioning, generated-file check, vet, unit + envtest + PostgreSQL tests.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" go test -count=1 -timeout $(TEST_TIMEOUT) $(GO_TEST_FLAGS) ./...

.PHONY: bench
bench: ## Worker benchmarks on a durable PostgreSQL cluster (stage latency, throughput vs raw pgmq and River); ends with BENCH lines.
	cd bench && go run . $(BENCH_FLAGS)

.PHONY: test-unit
test-unit: ## Only the pure unit tests (no PostgreSQL, no apiserver).
	go test -count=1 ./internal/dag/... ./api/...

.PHONY: fuzz
fuzz: ## Fuzz the graph validation for FUZZTIME (default 30s).
	go test ./internal/dag -run '^$$' -fuzz FuzzValidate -fuzztime $${FUZZTIME:-30s}

##@ Build

.PHONY: build
build: ## Build the manager binary (the same command the Dockerfile runs).
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/manager ./cmd/manager

.PHONY: build-worker
build-worker: ## Build the reference worker binary.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/worker ./cmd/worker

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig (webhooks off: no certificates locally).
	ENABLE_WEBHOOKS=false go run ./cmd/manager

##@ Local stack

.PHONY: demo
demo: ## The local stack with the demo workflows (first run builds the control plane: ~12 min; later ~1 min). DEMO_FLAGS=--keep keeps it up.
	@if [ ! -f "$$(hack/envtest-assets.sh --print-dir)/.complete" ]; then \
		echo "First run: building kube-apiserver and etcd from source (about 12 minutes on 2 cores), then the binaries (about 1 minute)."; fi
	@$(MAKE) --no-print-directory envtest-assets build build-worker build-taskerctl
	bin/taskerctl dev --assets "$$(hack/envtest-assets.sh)" $(DEMO_FLAGS)

.PHONY: build-taskerctl
build-taskerctl: ## Build bin/taskerctl and its kubectl plugin name bin/kubectl-tasker.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/taskerctl ./cmd/taskerctl
	ln -sf taskerctl bin/kubectl-tasker

##@ Dependencies

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, kube-controller-manager and etcd into the cache (first run ~12 min).
	@hack/envtest-assets.sh >/dev/null

.PHONY: python-deps
python-deps: ## Install Debian's python3-psycopg2 for the second-language worker test (idempotent).
	@hack/python-deps.sh

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into the cache.
$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS_BIN)
	hack/go-install.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize into the cache.
$(KUSTOMIZE):
	@mkdir -p $(TOOLS_BIN)
	hack/go-install.sh $@ sigs.k8s.io/kustomize/kustomize/v5 $(KUSTOMIZE_VERSION)
