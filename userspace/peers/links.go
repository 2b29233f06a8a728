package peers

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

// linkSet sends TCP messages to peers, one goroutine per peer while it has
// something to send, so a slow or unreachable peer delays no other.
type linkSet struct {
	m     *Member
	mu    sync.Mutex
	links map[string]*link
}

type link struct {
	node  *memberlist.Node
	queue [][]byte
	size  int
}

func (ls *linkSet) send(n *memberlist.Node, msgs [][]byte) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.links == nil {
		ls.links = map[string]*link{}
	}
	l, running := ls.links[n.Name]
	if !running {
		l = &link{}
		ls.links[n.Name] = l
	}
	l.node = n
	for _, msg := range msgs {
		l.queue = append(l.queue, msg)
		l.size += len(msg)
	}
	for l.size > maxLinkBacklog && len(l.queue) > 1 {
		l.size -= len(l.queue[0])
		l.queue = l.queue[1:]
		ls.m.stats.sendErrors.Add(1)
	}
	if !running && !ls.m.spawn(func() { ls.drain(n.Name) }) {
		delete(ls.links, n.Name)
	}
}

func (ls *linkSet) drain(name string) {
	for {
		ls.mu.Lock()
		l := ls.links[name]
		if len(l.queue) == 0 || ls.m.ctx.Err() != nil {
			delete(ls.links, name)
			ls.mu.Unlock()
			return
		}
		msg, node := l.queue[0], l.node
		l.queue = l.queue[1:]
		l.size -= len(msg)
		ls.mu.Unlock()
		ls.m.sendReliable(node, msg)
	}
}
