package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

const sessionUsage = `Usage: catherd session ID [flags]
       catherd session list --moved [--limit N] [flags]

Asks a running catherd, through its admin API:

  ID                where the next request of session ID (the JSESSIONID
                    value, route included) goes now, and why: its own
                    member (sticky), the member it moved to earlier, its
                    member's failover partner, balanced as a new session,
                    or nowhere (503). Asking changes nothing.
  list --moved      the sessions that moved off their member, most recently
                    used first (catherd remembers no others)

Flags:
`

// sessionCmd is `catherd session ...`.
func sessionCmd(args []string, stdout, stderr io.Writer) int {
	cmd := newSubcommand("catherd session", sessionUsage)
	client := cmd.adminFlags()
	asJSON := cmd.fs.Bool("json", false, "print JSON")
	movedOnly := cmd.fs.Bool("moved", false, "list: the sessions that moved (the only ones catherd remembers)")
	limit := cmd.fs.Int("limit", 100, "list: at most this many")
	words, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(words) != 1 {
		fmt.Fprintln(stderr, "catherd session: want a session id, or list --moved (see catherd session help)")
		return 2
	}
	c, ok := client(stderr)
	if !ok {
		return 2
	}
	if words[0] == "list" {
		if !*movedOnly {
			fmt.Fprintln(stderr, "catherd session list: catherd remembers only the sessions that moved: catherd session list --moved")
			return 2
		}
		return show(c, "/api/v1/sessions?moved=true&limit="+strconv.Itoa(*limit), "catherd session list", *asJSON, stdout, stderr,
			func(out io.Writer, list admin.MovedSessions) { printMovedSessions(out, list, time.Now()) })
	}
	return show(c, "/api/v1/sessions/"+url.PathEscape(words[0]), "catherd session", *asJSON, stdout, stderr, printSession)
}

func printSession(out io.Writer, s admin.Session) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "session\t%s\n", s.ID)
	if s.Home != "" {
		fmt.Fprintf(w, "route\t%s: member %s, %s\n", s.Route, s.Home, s.HomeState)
	} else if s.Route != "" {
		fmt.Fprintf(w, "route\t%s: no member has it\n", s.Route)
	}
	if s.MovedTo != "" {
		fmt.Fprintf(w, "moved to\t%s (%s)\n", s.MovedTo, s.MovedReason)
	}
	goes := s.Member
	if goes == "" {
		goes = "-"
	}
	fmt.Fprintf(w, "goes to\t%s (%s)\n", goes, s.Outcome)
	fmt.Fprintf(w, "why\t%s\n", s.Why)
	w.Flush()
}

func printMovedSessions(out io.Writer, list admin.MovedSessions, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SESSION\tMOVED TO\tREASON\tIDLE")
	for _, s := range list.Sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", s.Key, s.Member, s.Reason, now.Sub(s.LastUsed).Round(time.Second))
	}
	w.Flush()
	if len(list.Sessions) < list.Total {
		fmt.Fprintf(out, "(%d of %d moved sessions; --limit N for more)\n", len(list.Sessions), list.Total)
	}
}
