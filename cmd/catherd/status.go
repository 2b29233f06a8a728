package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/xdp"
)

const statusUsage = `Usage: catherd status [flags]

Prints a running catherd's members, moved sessions, tier peers, cluster
membership and XDP datapath, from its admin API. With no catherd answering, prints the XDP
state from the maps pinned in --xdp-pin-dir.

Flags:
`

// status prints a running catherd's state from its admin API: members,
// the cluster membership, the XDP datapath. With no catherd answering, it
// prints the XDP state from the pinned maps, which outlive the process (the
// program keeps steering between two catherds).
func status(args []string, stdout, stderr io.Writer) int {
	cmd := newSubcommand("catherd status", statusUsage)
	addr := cmd.fs.String("admin", config.DefaultAdmin, "admin address of the running catherd")
	dir := cmd.fs.String("xdp-pin-dir", config.DefaultXDPPinDir, "bpffs directory of the pinned XDP maps (when no catherd answers)")
	asJSON := cmd.fs.Bool("json", false, "print JSON instead of tables")
	if code, done := cmd.noWords(args, stdout, stderr); done {
		return code
	}
	st, err := fetchStatus(*addr)
	if err != nil {
		x, perr := xdp.ReadPinnedStats(*dir)
		if perr != nil {
			fmt.Fprintf(stderr, "catherd status: no catherd answers on %s (%v), and no XDP datapath is pinned in %s\n", *addr, err, *dir)
			return 1
		}
		fmt.Fprintf(stderr, "catherd status: no catherd answers on %s; XDP state from %s\n", *addr, *dir)
		st = admin.Status{Time: time.Now(), XDP: &x}
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
	printStatus(stdout, st)
	return 0
}

func fetchStatus(addr string) (admin.Status, error) {
	var st admin.Status
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/v1/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func printStatus(out io.Writer, st admin.Status) {
	if len(st.Members) > 0 {
		printMembers(out, st.Members)
		fmt.Fprintln(out)
	}
	if mv := st.Moved; mv != nil {
		fmt.Fprintf(out, "moved sessions: %d remembered; moves:", mv.Size)
		for _, r := range moved.Reasons {
			fmt.Fprintf(out, " %s %d", r, mv.Moves[r])
		}
		fmt.Fprintf(out, "; evicted for room: %d\n\n", mv.Evicted)
	}
	if t := st.Tier; t != nil {
		printTier(out, st.Time, *t)
	}
	if st.Membership != nil {
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CLUSTER MEMBER\tPORT\tUNIQUE ID\tUP\tLAST HEARD")
		for _, m := range st.Membership {
			fmt.Fprintf(w, "%s\t%d\t%s\t%v\t%v ago\n", m.Host, m.Port, m.UniqueID, time.Duration(m.AliveMillis)*time.Millisecond,
				st.Time.Sub(m.LastHeard).Round(time.Millisecond))
		}
		w.Flush()
		fmt.Fprintln(out)
	}
	if st.XDPError != "" {
		fmt.Fprintf(out, "XDP counters unreadable: %s\n", st.XDPError)
	}
	if st.XDP != nil {
		printXDP(out, *st.XDP)
	}
}

// printMembers prints members as a table. A ramping member's weight shows
// the share it has reached; FAILED OVER TO says where its sessions went.
func printMembers(out io.Writer, ms []admin.Member) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tROUTE\tDOMAIN\tSTATE\tFLAGS\tWEIGHT\tIN FLIGHT\tFAILED OVER TO")
	for _, m := range ms {
		weight := fmt.Sprint(m.Weight)
		if m.Ramp < 1 {
			weight += fmt.Sprintf(" (%.0f%%)", 100*m.Ramp)
		}
		var to []string
		for name, n := range m.Failovers {
			to = append(to, fmt.Sprintf("%s:%d", name, n))
		}
		sort.Strings(to)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.Route, m.Domain, m.State, m.Flags, weight, m.InFlight, strings.Join(to, " "))
	}
	w.Flush()
}

// printTier prints this instance in its tier and the peers it sees.
func printTier(out io.Writer, now time.Time, t admin.Tier) {
	fmt.Fprintf(out, "tier: %s on %s, state version %d (digest %s, %d records); messages sent %d, received %d, refused %d (auth %d, malformed %d, unknown %d)\n",
		t.Name, t.Addr, t.StateVersion, t.Digest, t.Records, t.Sent, t.Received,
		t.Refused["auth"]+t.Refused["malformed"]+t.Refused["unknown"], t.Refused["auth"], t.Refused["malformed"], t.Refused["unknown"])
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tADDRESS\tSTATE\tLAST CONTACT\tSTATE VERSION\tDIGEST")
	for _, p := range t.Peers {
		contact := "never"
		if !p.LastContact.IsZero() {
			contact = now.Sub(p.LastContact).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Addr, p.State, contact, p.StateVersion, p.Digest)
	}
	w.Flush()
	fmt.Fprintln(out)
}

func printXDP(out io.Writer, st xdp.Stats) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(st.Services) > 0 {
		fmt.Fprintln(w, "SERVICE\tBACKEND\tUSABLE\tPACKETS\tBYTES\tCONN HITS\tCONN MISSES\tNO BACKEND")
	}
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
	if len(st.Services) > 0 {
		fmt.Fprintln(out)
	}
	reasons := make([]string, 0, len(st.Verdicts))
	for r := range st.Verdicts {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERDICT\tPACKETS")
	for _, r := range reasons {
		fmt.Fprintf(w, "%s\t%d\n", r, st.Verdicts[r])
	}
	w.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

const unloadUsage = `Usage: catherd unload [flags]

Detaches the XDP datapath and removes its pinned maps, after catherd run
has stopped: L4 flows are forgotten and the interfaces go back to plain
kernel networking.

Flags:
`

// unload takes the datapath away: flows are forgotten and the interface
// goes back to plain kernel networking.
func unload(args []string, stdout, stderr io.Writer) int {
	cmd := newSubcommand("catherd unload", unloadUsage)
	dir := cmd.fs.String("xdp-pin-dir", config.DefaultXDPPinDir, "bpffs directory of the pinned XDP link and maps")
	if code, done := cmd.noWords(args, stdout, stderr); done {
		return code
	}
	if err := xdp.Unload(*dir); err != nil {
		fmt.Fprintf(stderr, "catherd unload: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "XDP datapath in %s unloaded\n", *dir)
	return 0
}
