package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

const memberUsage = `Usage: catherd member <action> [NAME] [VALUE] [flags]

Actions, against the admin API of a running catherd:
  list              the members and their states
  enable NAME       back in service (through settling and slow start)
  disable NAME      no requests at all; its sessions fail over (Apache's D)
  drain NAME        its own sessions only, no new ones (Apache's N)
  evacuate NAME     its sessions move to their replication partners, as on
                    failover, and stay there; waits until it has no request
                    in flight (--wait), here and on every peer of a tier,
                    after which it can be stopped with no session lost; names
                    the peers it could not reach. Refused for the last member
                    of a domain.
  recover NAME      out of the error state now, not after --retry
  weight NAME N     set its weight (1..100)
  add NAME=URL[,options]
                    a new member, as --backend gives one (the same options
                    and checks); it serves at once
  remove NAME       evacuates it and waits until it has no request in
                    flight (--wait), then removes it; --drain=false removes
                    it at once (its sessions fail over as on a failure).
                    Refused for the last member, and, draining, for the last
                    of a domain.

Flags:
`

// member runs `catherd member ACTION ...`.
func member(args []string, stdout, stderr io.Writer) int {
	cmd := newSubcommand("catherd member", memberUsage)
	client := cmd.adminFlags()
	asJSON := cmd.fs.Bool("json", false, "print JSON")
	wait := cmd.fs.Duration("wait", time.Minute, "evacuate, remove: how long to wait for the member's requests in flight to end, on every instance of a tier (evacuate: 0 does not wait)")
	drain := cmd.fs.Bool("drain", true, "remove: evacuate the member and wait for its requests in flight before removing it")
	words, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(words) == 0 {
		fmt.Fprintln(stderr, "catherd member: want an action (see catherd member help)")
		return 2
	}
	c, ok := client(stderr)
	if !ok {
		return 2
	}
	action, rest := words[0], words[1:]
	switch {
	case action == "list":
		return show(c, "/api/v1/members", "catherd member list", *asJSON, stdout, stderr, printMembers)
	case action == "add" && len(rest) == 1:
		var m admin.Member
		if err := c.do("POST", "/api/v1/members?spec="+url.QueryEscape(rest[0]), &m); err != nil {
			fmt.Fprintf(stderr, "catherd member add: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(stdout, stderr, m)
		}
		printMembers(stdout, []admin.Member{m})
		return 0
	case action == "remove" && len(rest) == 1:
		c.http.Timeout = *wait + 10*time.Second // the API waits for the drain
		var rm admin.Removed
		path := fmt.Sprintf("/api/v1/members/%s?drain=%t&wait=%s", url.PathEscape(rest[0]), *drain, wait.String())
		if err := c.do("DELETE", path, &rm); err != nil {
			fmt.Fprintf(stderr, "catherd member remove: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(stdout, stderr, rm)
		}
		how := "at once"
		if rm.Drained {
			how = "after its sessions moved and its requests ended"
		}
		fmt.Fprintf(stdout, "%s removed, %s\n", rm.Name, how)
		return 0
	}
	want := 1
	if action == "weight" {
		want = 2
	}
	if !slices.Contains(admin.Actions, action) || len(rest) != want {
		fmt.Fprintf(stderr, "catherd member: want list, add NAME=URL, remove NAME, or one of %s with a member name (weight: and a value); got %q\n",
			strings.Join(admin.Actions, ", "), strings.Join(words, " "))
		return 2
	}
	path := "/api/v1/members/" + url.PathEscape(rest[0]) + "/" + action
	if action == "weight" {
		path += "?value=" + url.QueryEscape(rest[1])
	}
	var m admin.Member
	if err := c.do("POST", path, &m); err != nil {
		fmt.Fprintf(stderr, "catherd member %s: %v\n", action, err)
		return 1
	}
	if action == "evacuate" && *wait > 0 {
		if err := c.waitIdle(m.Name, *wait); err != nil {
			fmt.Fprintf(stderr, "catherd member evacuate: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		return printJSON(stdout, stderr, m)
	}
	printMembers(stdout, []admin.Member{m})
	if action == "evacuate" && *wait > 0 {
		fmt.Fprintf(stdout, "%s has no request in flight: it can be stopped with no session lost\n", m.Name)
	}
	return 0
}

// adminClient calls a running catherd's admin API.
type adminClient struct {
	base  string
	token string
	http  http.Client
}

// do sends a request and decodes the JSON answer into out; an error answer
// becomes an error carrying its message (and the member names, if any).
func (c *adminClient) do(method, path string, out any) error {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("no catherd answers: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e admin.Error
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
		}
		if len(e.Members) > 0 {
			return fmt.Errorf("%s (members: %s)", e.Error, strings.Join(e.Members, ", "))
		}
		return errors.New(e.Error)
	}
	return json.Unmarshal(body, out)
}

// waitIdle polls the member's requests in flight, here and on every peer
// of the tier, until none has any. Peers that do not answer are named: the
// member may still have requests from them.
func (c *adminClient) waitIdle(name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var in admin.InFlight
		if err := c.do("GET", "/api/v1/members/"+url.PathEscape(name)+"/in-flight", &in); err != nil {
			return err
		}
		busy := busyIn(in)
		switch {
		case len(busy) == 0 && len(in.Unreachable) > 0:
			return fmt.Errorf("%s has no request in flight here or on the peers that answered, but %s could not be reached: their requests to it are unknown",
				name, strings.Join(in.Unreachable, ", "))
		case len(busy) == 0:
			return nil
		case time.Now().After(deadline):
			msg := fmt.Sprintf("%s still has requests in flight after %v: %s", name, limit, strings.Join(busy, ", "))
			if len(in.Unreachable) > 0 {
				msg += "; not reached: " + strings.Join(in.Unreachable, ", ")
			}
			return errors.New(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// busyIn lists where a member has requests in flight, as "WHERE:N".
func busyIn(in admin.InFlight) []string {
	var busy []string
	if in.Local > 0 {
		busy = append(busy, fmt.Sprintf("here:%d", in.Local))
	}
	for peer, n := range in.Peers {
		if n > 0 {
			busy = append(busy, fmt.Sprintf("%s:%d", peer, n))
		}
	}
	slices.Sort(busy)
	return busy
}

// show gets path from the admin API and prints the answer: as JSON, or as
// print puts it.
func show[T any](c *adminClient, path, what string, asJSON bool, stdout, stderr io.Writer, print func(io.Writer, T)) int {
	var v T
	if err := c.do("GET", path, &v); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 1
	}
	if asJSON {
		return printJSON(stdout, stderr, v)
	}
	print(stdout, v)
	return 0
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "catherd: %v\n", err)
		return 1
	}
	return 0
}
