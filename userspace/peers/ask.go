package peers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// AnswerFunc answers a question from peer from. ctx ends when the asker
// stops waiting (its deadline travels with the question) or the member
// closes; an answer made after that is not read.
type AnswerFunc func(ctx context.Context, from string, question []byte) []byte

// Answers is what Ask gathered: an answer per peer that gave one, and the
// peers that did not in time (unreachable, failed, partitioned or slow),
// by name.
type Answers struct {
	From        map[string][]byte
	Unreachable []string
}

// askSet holds the questions waiting for answers, by id.
type askSet struct {
	mu    sync.Mutex
	next  uint64
	calls map[uint64]*askCall
}

type askCall struct {
	targets []string
	waiting map[string]bool
	answers map[string][]byte
	done    chan struct{}
}

func (s *askSet) add(targets []string) (uint64, *askCall) {
	c := &askCall{targets: targets, waiting: map[string]bool{}, answers: map[string][]byte{}, done: make(chan struct{})}
	for _, t := range targets {
		c.waiting[t] = true
	}
	if len(targets) == 0 {
		close(c.done)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[uint64]*askCall{}
	}
	s.next++
	s.calls[s.next] = c
	return s.next, c
}

func (s *askSet) remove(id uint64) {
	s.mu.Lock()
	delete(s.calls, id)
	s.mu.Unlock()
}

// settle records peer's answer to question id; fail, that the question
// could not reach it. Anything else (an answer to a question no longer
// waited for, or from a peer not asked) is ignored.
func (s *askSet) settle(id uint64, peer string, answer []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(id, peer, answer, true)
}

func (s *askSet) fail(id uint64, peer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(id, peer, nil, false)
}

func (s *askSet) settleLocked(id uint64, peer string, answer []byte, answered bool) {
	c := s.calls[id]
	if c == nil || !c.waiting[peer] {
		return
	}
	delete(c.waiting, peer)
	if answered {
		c.answers[peer] = answer
	}
	if len(c.waiting) == 0 {
		close(c.done)
	}
}

func (s *askSet) result(c *askCall) Answers {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Answers{From: make(map[string][]byte, len(c.answers))}
	for _, t := range c.targets {
		if ans, ok := c.answers[t]; ok {
			a.From[t] = ans
		} else {
			a.Unreachable = append(a.Unreachable, t)
		}
	}
	slices.Sort(a.Unreachable)
	return a
}

// Ask sends question to every peer that has not left, failed ones
// included (a peer this member cannot reach may still be serving), and
// waits for their answers until all have answered or ctx ends. Peers that
// could not be sent the question, or did not answer by then, are listed as
// unreachable. Over TCP: a question and its answer may be up to 1 MiB.
func (m *Member) Ask(ctx context.Context, question []byte) (Answers, error) {
	if len(question) > maxPayloadLen {
		return Answers{}, fmt.Errorf("peers: question of %d bytes, at most %d", len(question), maxPayloadLen)
	}
	if m.ctx.Err() != nil {
		return Answers{}, errClosed
	}
	nodes := m.peers.nodes(false)
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	id, call := m.asks.add(names)
	defer m.asks.remove(id)
	var timeout time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Millisecond, time.Until(deadline))
	}
	msg := m.encode(message{envelope: envelope{kind: kindQuestion}, id: id, timeout: timeout, payload: question})
	for _, n := range nodes {
		m.spawn(func() {
			if m.sendReliable(n, msg) != nil {
				m.asks.fail(id, n.Name)
			}
		})
	}
	select {
	case <-call.done:
	case <-ctx.Done():
	case <-m.ctx.Done():
	}
	return m.asks.result(call), nil
}

// answer runs the AnswerFunc for a question and sends its answer back.
func (m *Member) answer(q message) {
	n, ok := m.peers.node(q.sender)
	if !ok {
		return
	}
	m.spawn(func() {
		timeout := q.timeout
		if timeout == 0 {
			timeout = maxDuration
		}
		ctx, cancel := context.WithTimeout(m.ctx, timeout)
		defer cancel()
		var payload []byte
		if m.cfg.Answer != nil {
			payload = m.cfg.Answer(ctx, q.sender, q.payload)
		}
		if len(payload) > maxPayloadLen {
			m.log.Error("peers: answer too large to send", "peer", q.sender, "bytes", len(payload), "limit", maxPayloadLen)
			return
		}
		m.sendReliable(n, m.encode(message{envelope: envelope{kind: kindAnswer}, id: q.id, payload: payload}))
	})
}
