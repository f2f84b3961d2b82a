// Command etcd is the etcd server at the version k8s.io/kubernetes itself
// requires, so client and server versions agree.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
