//go:build tools

// Package tools pins the Kubernetes binaries that hack/kube/build.sh builds
// for integration tests. It is never compiled; the import only keeps the
// requirement in go.mod/go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
