// Package e2e tests IMI end to end against real imi processes: the binary is
// built once, nodes run as child processes on loopback ports, and the tests
// talk to them only through the CLI and the HTTP API, as an operator would.
//
// The package holds no code outside its tests; this file carries the package
// documentation. go test -short skips the package.
package e2e
