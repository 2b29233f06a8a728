package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/cliflag"
	"github.com/catherd/catherd/userspace/config"
)

// subcommand is the command line of a catherd subcommand other than run:
// its flags may come anywhere among its words, as operators type them
// ("evacuate node2 --wait 2m").
type subcommand struct {
	name  string // as the user typed it, e.g. "catherd member"
	usage string // what help prints before the flags
	fs    *flag.FlagSet
}

func newSubcommand(name, usage string) *subcommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed as one line, by parse
	return &subcommand{name: name, usage: usage, fs: fs}
}

// parse reads args. When done, the caller returns code: help was printed
// (-h, --help or the word help: 0), or a usage error as one line (2).
func (c *subcommand) parse(args []string, stdout, stderr io.Writer) (words []string, code int, done bool) {
	for {
		err := cliflag.Parse(c.fs, args)
		if errors.Is(err, flag.ErrHelp) || (err == nil && len(words) == 0 && c.fs.NArg() > 0 && c.fs.Arg(0) == "help") {
			fmt.Fprint(stdout, c.usage)
			if strings.Contains(c.usage, "Flags:") {
				cliflag.PrintDefaults(c.fs, stdout)
			}
			return nil, 0, true
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", c.name, err, c.name)
			return nil, 2, true
		}
		if c.fs.NArg() == 0 {
			return words, 0, false
		}
		words = append(words, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
}

// noWords parses a subcommand that takes flags only.
func (c *subcommand) noWords(args []string, stdout, stderr io.Writer) (code int, done bool) {
	words, code, done := c.parse(args, stdout, stderr)
	if !done && len(words) > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see %s --help)\n", c.name, words[0], c.name)
		return 2, true
	}
	return code, done
}

// adminFlags declares --admin and --admin-token-file; client, once the
// flags are parsed, returns a client of that admin API.
func (c *subcommand) adminFlags() (client func(stderr io.Writer) (*adminClient, bool)) {
	addr := c.fs.String("admin", config.DefaultAdmin, "admin address of the running catherd")
	tokenFile := c.fs.String("admin-token-file", "", "file holding the admin token (when catherd has one)")
	return func(stderr io.Writer) (*adminClient, bool) {
		ac := &adminClient{base: "http://" + *addr, http: http.Client{Timeout: 5 * time.Second}}
		if *tokenFile != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				fmt.Fprintf(stderr, "%s: --admin-token-file: %v\n", c.name, err)
				return nil, false
			}
			ac.token = strings.TrimSpace(string(b))
		}
		return ac, true
	}
}
