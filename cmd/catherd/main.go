// Command catherd is a load balancer for Tomcat clusters: it routes each
// session to the node named by its jvmRoute, balances new sessions, and
// moves sessions to another node when theirs fails.
//
//	catherd run --listen :80 --backend node1=http://10.0.0.11:8080 --backend node2=http://10.0.0.12:8080
//
// See `catherd run --help` for every flag.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/catherd/catherd/userspace/version"
)

const usage = `Usage: catherd <command> [flags]

Commands:
  run       run the balancer (see: catherd run --help); run --check checks
            a configuration without serving
  reload    replace the running catherd by one started with new flags,
            without dropping a request (see: catherd reload --help)
  status    show a running catherd's members, cluster membership and XDP
            datapath [--admin ADDR] [--json]; with no catherd running, the
            XDP state pinned in [--xdp-pin-dir DIR]
  member    change a running catherd's members (see: catherd member help):
            list, enable, disable, drain, evacuate, recover, weight
  session   where a session goes and why; the sessions that moved
            (see: catherd session help)
  unload    detach the XDP datapath and remove its pinned maps (after
            catherd run has stopped) [--xdp-pin-dir DIR]
  version   show catherd's version (also: catherd --version)
  completion bash
            print the bash completion script
  help      show this text
`

func main() {
	takeReadyPipe()
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs a subcommand and returns the process exit code: 0 on
// success, 1 when a started balancer fails, 2 on bad usage (nothing started).
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(args[1:], stdout, stderr)
	case "reload":
		return reload(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "member":
		return member(args[1:], stdout, stderr)
	case "session":
		return sessionCmd(args[1:], stdout, stderr)
	case "unload":
		return unload(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.Get())
		return 0
	case "completion":
		return completion(args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "catherd: unknown command %q (want one of %s; see catherd help)\n", args[0], strings.Join(commands, ", "))
	return 2
}

// commands are catherd's subcommands, as dispatch knows them.
var commands = []string{"run", "reload", "status", "member", "session", "unload", "version", "completion", "help"}
