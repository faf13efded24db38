// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 for
// the k8s/ module's tests against a real kube-apiserver (.ci/k8s-tools).
// Never imported by the sidecar or the injector.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
