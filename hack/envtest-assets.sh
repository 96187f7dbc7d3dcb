#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, kube-controller-manager, etcd) from the Go module proxy into a
# cache folder outside the repository, so that every clone on the machine shares it.
#
# setup-envtest cannot be used here: it downloads prebuilt binaries from a bucket this machine cannot reach. The
# Kubernetes binaries are built from k8s.io/kubernetes, whose go.mod points its staging modules (k8s.io/api, ...) at
# v0.0.0 with replace directives into its own tree; a throwaway module replaces each of them with the published
# v0.<minor>.<patch> release instead.
#
# Idempotent: a stamp file records what was built; a second run prints the folder and exits.
# Prints the assets folder (usable as KUBEBUILDER_ASSETS) on its last line of stdout.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
CACHE_ROOT="${TASKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasker-operator}"
ASSETS="$CACHE_ROOT/envtest/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
STAMP="$ASSETS/.complete"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$ASSETS"
  exit 0
fi

log() { echo "[envtest-assets $(date +%H:%M:%S)] $*" >&2; }

if [[ -f "$STAMP" && -x "$ASSETS/kube-apiserver" && -x "$ASSETS/kube-controller-manager" && -x "$ASSETS/etcd" ]]; then
  echo "$ASSETS"
  exit 0
fi

mkdir -p "$ASSETS"
# One builder at a time per machine: concurrent clones wait for the first instead of building twice.
exec 9>"$CACHE_ROOT/envtest/.lock"
flock 9
if [[ -f "$STAMP" ]]; then
  echo "$ASSETS"
  exit 0
fi

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
export CGO_ENABLED=0

k8s_minor_patch="${K8S_VERSION#v1.}"          # 37.2
staging_version="v0.${k8s_minor_patch}"       # v0.37.2
major=1
minor="${k8s_minor_patch%%.*}"

build_kubernetes() {
  local work="$CACHE_ROOT/envtest/build-kubernetes-${K8S_VERSION}"
  mkdir -p "$work"
  log "first run: building kube-apiserver and kube-controller-manager ${K8S_VERSION} from source (about 8-12 minutes on 2 cores, ~3 GB memory)"
  log "downloading k8s.io/kubernetes ${K8S_VERSION} from the module proxy"
  local gomod
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$gomod" ]] || { log "could not find go.mod of k8s.io/kubernetes ${K8S_VERSION}"; exit 1; }

  # Every staging module is required at v0.0.0 and replaced into ./staging; point each at its published release.
  local staging
  staging=$(grep -E '^[[:space:]]*k8s\.io/[^[:space:]]+ v0\.0\.0$' "$gomod" | awk '{print $1}' | sort -u)
  [[ -n "$staging" ]] || { log "no staging modules found in $gomod"; exit 1; }

  {
    echo "module tasker.dev/envtest-kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    for m in $staging; do echo "replace $m => $m ${staging_version}"; done
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
EOF
  log "resolving dependencies ($(echo "$staging" | wc -l) staging modules replaced with ${staging_version})"
  (cd "$work" && go mod tidy -e >/dev/null 2>"$work/tidy.log") || { cat "$work/tidy.log" >&2; exit 1; }

  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  log "compiling (progress: one dot per 30 s)"
  (while sleep 30; do printf . >&2; done) &
  local ticker=$!
  trap 'kill $ticker 2>/dev/null || true' RETURN
  (cd "$work" && go build -trimpath -ldflags "-s -w ${ldflags}" -o "$ASSETS/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  echo >&2
  log "kube-apiserver: $("$ASSETS/kube-apiserver" --version)"
}

build_etcd() {
  local work="$CACHE_ROOT/envtest/build-etcd-${ETCD_VERSION}"
  mkdir -p "$work"
  log "building etcd ${ETCD_VERSION} from go.etcd.io/etcd/server/v3 (about 1-2 minutes)"
  cat >"$work/go.mod" <<EOF
module tasker.dev/envtest-etcd

go 1.26

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
EOF
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  (cd "$work" && go mod tidy -e >/dev/null 2>"$work/tidy.log") || { cat "$work/tidy.log" >&2; exit 1; }
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd" go.etcd.io/etcd/server/v3)
  log "etcd: $("$ASSETS/etcd" --version | head -1)"
}

[[ -x "$ASSETS/etcd" ]] || build_etcd
[[ -x "$ASSETS/kube-apiserver" && -x "$ASSETS/kube-controller-manager" ]] || build_kubernetes
date -u +%FT%TZ >"$STAMP"
log "assets ready in $ASSETS"
echo "$ASSETS"
