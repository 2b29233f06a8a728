package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/config"
)

// completion is `catherd completion bash`: a bash completion script for
// catherd's commands, their flags and the flags' fixed values. The Debian
// package installs it; anyone else can `source <(catherd completion bash)`.
func completion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "bash" {
		fmt.Fprintln(stderr, "catherd completion: want bash (catherd completion bash > /etc/bash_completion.d/catherd)")
		return 2
	}
	io.WriteString(stdout, bashCompletion())
	return 0
}

// flagValues are the fixed values of flags that have them.
var flagValues = map[string][]string{
	"--lbmethod":       balancer.Methods,
	"--log-level":      {"debug", "info", "warn", "error"},
	"--log-format":     {"text", "json"},
	"--xdp-mode":       {"native", "generic"},
	"--failover-scope": {"domain", "any"},
	"--l4-hash":        {"ip", "ip+port"},
}

// fileFlags take a file name.
var fileFlags = []string{"--tls-cert", "--tls-key", "--admin-token-file", "--handoff-socket", "--state-file", "--access-log"}

// ifaceFlags take a network interface.
var ifaceFlags = []string{"--xdp-iface", "--membership-iface"}

// helpFlag finds a flag in a help text as cliflag.PrintDefaults writes it.
var helpFlag = regexp.MustCompile(`(?m)^  (--[a-z0-9-]+)`)

// subcommandFlags lists a subcommand's flags, read from its own help text,
// so that the script cannot forget one.
func subcommandFlags(name string) []string {
	var out bytes.Buffer
	dispatch([]string{name, "--help"}, &out, io.Discard)
	var flags []string
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

func bashCompletion() string {
	var run []string
	for _, f := range config.RunFlags() {
		run = append(run, "--"+f.Name)
	}
	words := map[string][]string{
		"member":     append([]string{"list", "add", "remove", "help"}, admin.Actions...),
		"session":    {"list", "help"},
		"completion": {"bash"},
	}
	flags := map[string][]string{"run": run, "reload": run}
	for _, c := range []string{"member", "session", "status", "unload"} {
		flags[c] = subcommandFlags(c)
	}
	var b strings.Builder
	b.WriteString("# bash completion for catherd (catherd completion bash)\n")
	b.WriteString("_catherd() {\n")
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} flags= words=\n")
	fmt.Fprintf(&b, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(commands, " "))
	b.WriteString("\tcase $prev in\n")
	for _, f := range slices.Sorted(maps.Keys(flagValues)) {
		fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", f, strings.Join(flagValues[f], " "))
	}
	fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", strings.Join(fileFlags, "|"))
	fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W \"$(ls /sys/class/net 2>/dev/null)\" -- \"$cur\")); return ;;\n", strings.Join(ifaceFlags, "|"))
	b.WriteString("\tesac\n\tcase ${COMP_WORDS[1]} in\n")
	for _, c := range slices.Sorted(maps.Keys(flags)) {
		fmt.Fprintf(&b, "\t%s) flags=%q", c, strings.Join(flags[c], " "))
		if w, ok := words[c]; ok {
			fmt.Fprintf(&b, "; [ \"$COMP_CWORD\" -eq 2 ] && words=%q", strings.Join(w, " "))
		}
		b.WriteString(" ;;\n")
	}
	fmt.Fprintf(&b, "\tcompletion) words=%q ;;\n", strings.Join(words["completion"], " "))
	b.WriteString("\tesac\n")
	b.WriteString("\tif [[ $cur == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n\telse\n\t\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n\tfi\n")
	b.WriteString("}\ncomplete -F _catherd catherd\n")
	return b.String()
}
