package peers

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Member as memberlist's Delegate, EventDelegate and
// PingDelegate, kept off the Member's own method set.
type delegate struct{ m *Member }

func (d *delegate) NodeMeta(int) []byte { return nil }

// NotifyMsg gets user messages from UDP (memberlist's packet handler) and
// from TCP (one goroutine per connection), concurrently.
func (d *delegate) NotifyMsg(buf []byte) { d.m.receive(buf) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.m.queue.GetBroadcasts(overhead, limit)
	d.m.stats.sent.Add(uint64(len(msgs)))
	return msgs
}

func (d *delegate) LocalState(bool) []byte { return d.m.localState() }

func (d *delegate) MergeRemoteState(buf []byte, _ bool) { d.m.mergeState(buf) }

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.m.peers.joined(n, time.Now()) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.peers.updated(n, time.Now()) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.m.peers.failed(n, time.Now()) }

// AckPayload rides on every ping ack: the state version this member
// advertises.
func (d *delegate) AckPayload() []byte {
	return d.m.encode(message{envelope: envelope{kind: kindStatus}})
}

func (d *delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, payload []byte) {
	msg, err := decodeMessage(payload)
	if err != nil || msg.kind != kindStatus || msg.sender != n.Name {
		d.m.refuse(&d.m.stats.refusedMalformed, "ping ack payload", n.Name, err)
		return
	}
	d.m.peers.advertised(n.Name, msg.clock, msg.digest, time.Now())
}

// logWriter passes memberlist's log lines ("[LEVEL] memberlist: text") to
// slog at their level.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG] ": slog.LevelDebug, "[INFO] ": slog.LevelInfo, "[WARN] ": slog.LevelWarn,
		"[ERR] ": slog.LevelError, "[ERROR] ": slog.LevelError,
	} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			line, level = rest, l
			break
		}
	}
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}
