package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/catherd/catherd/userspace/xdp"
)

// status prints the XDP datapath's state from its pinned maps. It needs no
// running catherd: the program keeps steering between two of them.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("catherd status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("xdp-pin-dir", xdp.DefaultPinDir, "bpffs directory of the pinned XDP maps")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	st, err := xdp.ReadPinnedStats(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "catherd status: no XDP datapath in %s (is catherd run with --xdp-iface?): %v\n", *dir, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "catherd status: %v\n", err)
			return 1
		}
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tBACKEND\tUSABLE\tPACKETS\tBYTES\tCONN HITS\tCONN MISSES\tNO BACKEND")
	for _, s := range st.Services {
		key := "ip"
		if s.HashPort {
			key = "ip+port"
		}
		fmt.Fprintf(w, "%s (%s)\t\t\t%d\t%d\t%d\t%d\t%d\n", s.Service, key, s.Packets, s.Bytes, s.ConnHits, s.ConnMisses, s.NoBackend)
		for _, b := range s.Backends {
			fmt.Fprintf(w, "\t%s\t%s\t%d\t%d\t\t\t\n", b.Addr, yesNo(b.Usable), b.Packets, b.Bytes)
		}
	}
	w.Flush()
	fmt.Fprintln(stdout)
	reasons := make([]string, 0, len(st.Verdicts))
	for r := range st.Verdicts {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	w = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERDICT\tPACKETS")
	for _, r := range reasons {
		fmt.Fprintf(w, "%s\t%d\n", r, st.Verdicts[r])
	}
	w.Flush()
	return 0
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// unload takes the datapath away: flows are forgotten and the interface
// goes back to plain kernel networking.
func unload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("catherd unload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("xdp-pin-dir", xdp.DefaultPinDir, "bpffs directory of the pinned XDP link and maps")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := xdp.Unload(*dir); err != nil {
		fmt.Fprintf(stderr, "catherd unload: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "XDP datapath in %s unloaded\n", *dir)
	return 0
}
