// Command gen writes the documents of the Debian package that come from
// catherd's own flags, so that they cannot fall behind: the man page
// catherd(1) and /etc/default/catherd, which lists every flag of catherd
// run, commented out, with its default. scripts/deb/build.sh runs it.
//
//	go run ./scripts/deb/gen -bin bin/catherd -version 1.2.0 -man catherd.1 -defaults catherd.default
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/cliflag"
	"github.com/catherd/catherd/userspace/config"
)

func main() {
	bin := flag.String("bin", "bin/catherd", "the catherd binary (its command overview goes into the man page)")
	version := flag.String("version", "", "the package's version")
	man := flag.String("man", "", "write the man page here")
	defaults := flag.String("defaults", "", "write /etc/default/catherd here")
	flag.Parse()
	overview, err := exec.Command(*bin, "help").Output()
	if err != nil {
		fail("%s help: %v", *bin, err)
	}
	flags := config.RunFlags()
	if *man != "" {
		write(*man, manPage(*version, string(overview), flags))
	}
	if *defaults != "" {
		write(*defaults, defaultsFile(flags))
	}
}

func write(path, text string) {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "gen: "+format+"\n", a...)
	os.Exit(1)
}

// roff escapes text for a man page: backslashes, hyphens (which troff
// would otherwise turn into typographic ones, breaking copied flags), and
// lines that start with a control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func manPage(version, overview string, flags []cliflag.Flag) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH CATHERD 1 %q %q \"User Commands\"\n", time.Now().UTC().Format("2006-01-02"), "catherd "+version)
	b.WriteString(".SH NAME\ncatherd \\- load balancer for Tomcat clusters\n")
	b.WriteString(".SH SYNOPSIS\n.B catherd run\n.RI [ flags ]\n.br\n.B catherd\n.I command\n.RI [ arguments ]\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(`catherd routes each session to the Tomcat node named by its jvmRoute, balances new sessions, and moves a session whose node fails to a node that holds its copy, the same one from every catherd, and keeps it there. L4 services are steered in XDP by client address, with direct server return. The flags of catherd run are the whole configuration; under systemd they are CATHERD_ARGS in /etc/default/catherd.`) + "\n")
	_, commands, _ := strings.Cut(overview, "Commands:\n")
	b.WriteString(".SH COMMANDS\n.nf\n" + roff(strings.TrimRight(commands, "\n")) + "\n.fi\n")
	b.WriteString(".SH OPTIONS OF CATHERD RUN\n")
	for _, f := range flags {
		if f.Kind != "" {
			fmt.Fprintf(&b, ".TP\n.BI \\-\\-%s \" %s\"\n", roff(f.Name), roff(f.Kind))
		} else {
			fmt.Fprintf(&b, ".TP\n.B \\-\\-%s\n", roff(f.Name))
		}
		usage := strings.ReplaceAll(f.Usage, "\n", " ")
		if f.Default != "" {
			usage += " (default " + f.Default + ")"
		}
		b.WriteString(roff(usage) + "\n")
	}
	b.WriteString(".SH FILES\n.TP\n.I /etc/default/catherd\n" + roff("CATHERD_ARGS, the flags catherd.service runs catherd run with; every flag is listed there, commented out.") + "\n")
	b.WriteString(".TP\n.I /lib/systemd/system/catherd.service\n" + roff("The systemd unit: checks the flags before a start and a reload (catherd run --check), runs catherd with only CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE.") + "\n")
	b.WriteString(".TP\n.I /sys/fs/bpf/catherd\n" + roff("The XDP datapath's pinned link and maps, kept across restarts (catherd unload removes them).") + "\n")
	b.WriteString(".SH SIGNALS\n.TP\nSIGTERM, SIGINT\n" + roff("Stop accepting, finish the requests in flight (--shutdown-timeout), exit; the XDP program stays attached.") + "\n")
	b.WriteString(".TP\nSIGHUP\n" + roff("Reread the TLS certificates.") + "\n")
	b.WriteString(".TP\nSIGUSR2\n" + roff("Start a successor with the same flags (from the program file now at the same path): it takes the listening sockets and state over, and this process drains. catherd reload does the same with new flags; systemctl reload catherd runs it.") + "\n")
	b.WriteString(".SH EXIT STATUS\n" + roff("0 on success (or after handing over to a successor); 1 when a started catherd fails, or a command against a running one does; 2 for bad usage, with one line naming the flag (nothing is started).") + "\n")
	b.WriteString(".SH SEE ALSO\n.BR systemctl (1),\n.BR systemd.exec (5),\n" + roff("/usr/share/doc/catherd/README.md") + "\n")
	return b.String()
}

func defaultsFile(flags []cliflag.Flag) string {
	var b strings.Builder
	b.WriteString(`# /etc/default/catherd: the flags catherd.service runs "catherd run" with.
#
# After editing:
#   systemctl enable --now catherd   the first time
#   systemctl reload catherd         later: checks the new flags (catherd run
#                                    --check) and hands over to a catherd
#                                    started with them, without dropping a
#                                    request; a bad flag changes nothing
# Check a change by hand with: catherd run --check $CATHERD_ARGS
#
# For example:
#CATHERD_ARGS="--listen :80 --backend node1=http://10.0.0.11:8080 --backend node2=http://10.0.0.12:8080"
CATHERD_ARGS=""

# Every flag of catherd run (see catherd(1)):
`)
	for _, f := range flags {
		head := "--" + f.Name
		if f.Kind != "" {
			head += " " + f.Kind
		}
		fmt.Fprintf(&b, "#\n#   %s\n", head)
		usage := f.Usage
		if f.Default != "" {
			usage += " (default " + f.Default + ")"
		}
		for _, line := range strings.Split(usage, "\n") {
			fmt.Fprintf(&b, "#       %s\n", line)
		}
	}
	return b.String()
}
