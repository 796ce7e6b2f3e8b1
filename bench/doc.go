// Package bench measures the bridge's own cost per receipt: the whole
// path (wire → decode → core → store → outbox → the other wire) with
// do-nothing stand-ins for both servers on loopback, so that what is
// measured is the bridge. Its benchmarks are in its test files (run: go
// test -run XXX -bench . -benchtime 20000x ./bench/); bench/procbench is
// the load bench and crash drill, with the bridge as a process
// (docs/performance.md, docs/reliability.md).
package bench
