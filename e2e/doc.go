// Package e2e holds the end-to-end tests of xfaas on a real cluster: a
// consul agent, NATS with JetStream and a nomad agent with the xfaas task
// driver, running the jobspecs of jobspecs/ as an operator submits them
// (paths and ports through HCL variables). They need root (cgroups) and the
// nomad and consul binaries that `make tools` builds; without them they
// fail and say why.
//
//	go test ./e2e/...
//	go test -run '^$' -bench . ./e2e/...
package e2e
