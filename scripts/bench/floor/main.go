// Command floor is a deliberately naive fasthttp reverse proxy: round robin,
// no stickiness, no header rewriting, whole responses buffered. It is not a
// product; the benchmark runs it beside catherd to show how much of
// catherd's cost per request is fasthttp's floor and how much is catherd's
// own work (routing, streaming, metrics).
//
//	floor --listen 127.0.0.1:18094 --backend b1=http://127.0.0.1:18081 ...
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

type backends []*fasthttp.HostClient

func (b *backends) String() string { return "" }

func (b *backends) Set(spec string) error {
	_, url, ok := strings.Cut(spec, "=")
	addr, isHTTP := strings.CutPrefix(url, "http://")
	if !ok || !isHTTP {
		return fmt.Errorf("want NAME=http://HOST:PORT, got %q", spec)
	}
	*b = append(*b, &fasthttp.HostClient{Addr: addr, MaxConns: 1024})
	return nil
}

func main() {
	var listen string
	var hosts backends
	flag.StringVar(&listen, "listen", "127.0.0.1:18094", "address to serve on")
	flag.Var(&hosts, "backend", "NAME=http://HOST:PORT (repeatable)")
	flag.Parse()
	if len(hosts) == 0 {
		fmt.Fprintln(os.Stderr, "floor: at least one --backend")
		os.Exit(2)
	}
	var next atomic.Uint64
	err := fasthttp.ListenAndServe(listen, func(ctx *fasthttp.RequestCtx) {
		hc := hosts[next.Add(1)%uint64(len(hosts))]
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("502 bad gateway", fasthttp.StatusBadGateway)
		}
	})
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
