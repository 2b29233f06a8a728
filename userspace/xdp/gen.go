package xdp

// The datapath is compiled from ../../bpf by bpf2go; the generated Go and
// object files are committed, so building catherd needs no clang. `make
// generate-check` (run in CI) regenerates them and fails on any difference.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type vip_key -type service -type vip_addr -type backend -type flow_key -type flow -type service_counters -type backend_counters -type membership_config -type lpm_key -type bucket catherd ../../bpf/catherd.c -- -I../../bpf/include -O2 -g -Wall -Werror
