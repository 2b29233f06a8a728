// Package tier makes several catherd instances in front of one Tomcat
// cluster act as one balancer. What operators do to a member on one
// instance (enable, disable, drain, evacuate, recover, weight; members
// added or removed at run time) and the sessions that moved are written
// to the tier's shared table (userspace/peers) and applied on every
// instance, the last writer winning where two disagree. What each
// instance observes stays its own: its health checks, the cluster's
// heartbeats it hears, the error states of its requests. Failover
// partners need no sharing: every instance picks the same one by hashing
// (balancer).
//
// The shared table's keys:
//
//	flags/MEMBER    the member's operator flags (balancer.Flags: "", "D", "N", ...)
//	weight/MEMBER   its weight, in decimal
//	recover/MEMBER  an operator took it out of the error state (expires after a minute)
//	moved/KEY       REASON MEMBER: the session KEY moved to MEMBER (expires after --session-ttl idle)
//	member/MEMBER   "add SPEC": added at run time as --backend SPEC; "remove drain" or "remove now": removed
//
// A member's record never expires: an instance that starts later, even
// with the member in its --backend flags, follows what the tier did to it
// at run time. SPEC holds the member's whole --backend value, an AJP
// secret included: the table travels encrypted under --peer-key-file.
//
// A change is applied by reading the key's current record, not the record
// the change carried, so that changes applied late (one goroutine applies
// them in order, behind the writes) never undo a newer one.
package tier

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/peers"
)

// Key prefixes of the shared table.
const (
	flagsPrefix   = "flags/"
	weightPrefix  = "weight/"
	recoverPrefix = "recover/"
	movedPrefix   = "moved/"
	memberPrefix  = "member/"
)

// Values of a member/ record.
const (
	addValue         = "add "
	removeDrainValue = "remove drain"
	removeNowValue   = "remove now"
)

// recoverTTL is how long a recover stays in the table: long enough to
// reach every peer, short enough that an instance joining later does not
// take a member out of an error state it entered since.
const recoverTTL = time.Minute

// Roster changes this instance's members as the tier says: what a peer
// added or removed at run time. Neither change is shared again.
type Roster interface {
	// Spec is the --backend value of the named member; "" when there
	// is no such member.
	Spec(name string) string
	// AddFromTier adds the member spec (a --backend value) describes.
	AddFromTier(spec string) error
	// RemoveFromTier removes m at once (an error if it is no longer in
	// the pool).
	RemoveFromTier(m *balancer.Member) error
}

// Options are what a tier shares: the pool's members and its moved
// sessions.
type Options struct {
	Pool  *balancer.Pool
	Moved *moved.Table
	// Roster, if not nil, adds and removes the members peers add and
	// remove at run time; without it, those changes are ignored here.
	Roster Roster
	// SessionTTL is --session-ttl: a shared moved session expires after
	// it has been idle this long on every instance.
	SessionTTL time.Duration
	Log        *slog.Logger
}

// Tier is this instance's place in a tier.
type Tier struct {
	pool   *balancer.Pool
	moved  *moved.Table
	roster Roster
	ttl    time.Duration
	log    *slog.Logger
	member *peers.Member

	// ctx ends when the tier stops: members waiting to be removed
	// (removals goroutines, counted in removals) are then left alone.
	ctx      context.Context
	cancel   context.CancelFunc
	removals sync.WaitGroup
	// rosterMu orders the roster changes of the goroutine that applies
	// the table's changes and of the removals waiting off it, so that a
	// removal never takes a member that a newer record replaced meanwhile.
	rosterMu sync.Mutex

	stopOnce sync.Once
	stopErr  error
}

// Start starts this instance's peers member (cfg, whose OnChange and
// Answer are the tier's) and shares the pool's moved sessions from now
// on. Join it to the tier before serving.
func Start(cfg peers.Config, opts Options) (*Tier, error) {
	t := &Tier{pool: opts.Pool, moved: opts.Moved, roster: opts.Roster, ttl: opts.SessionTTL, log: opts.Log}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	cfg.OnChange = t.apply
	cfg.Answer = t.answer
	cfg.Logger = opts.Log
	m, err := peers.Start(cfg)
	if err != nil {
		return nil, err
	}
	t.member = m
	t.moved.Observe(observer{t})
	return t, nil
}

// Join takes in the tier's state from the --peer seeds: when it returns
// nil, every operator action and moved session the tier knows of has been
// applied here. It fails (wrapping peers.ErrNoPeers) when no seed
// answered: the first instance of a tier starts alone, and the member
// keeps trying the seeds.
func (t *Tier) Join() error { return t.member.Join() }

// Leave says goodbye to the peers (they list this instance as left, not
// failed) and stops sharing. Only the first Leave or Close does anything.
func (t *Tier) Leave(timeout time.Duration) error {
	t.stop(func() error { return t.member.Leave(timeout) })
	return t.stopErr
}

// Close stops sharing at once, without a goodbye: for a hand-off, whose
// successor takes this instance's name and address in the tier right
// away.
func (t *Tier) Close() error {
	t.stop(t.member.Close)
	return t.stopErr
}

func (t *Tier) stop(f func() error) {
	t.stopOnce.Do(func() {
		t.moved.Observe(nil)
		t.cancel()
		t.stopErr = f() // no change is applied after this
		t.removals.Wait()
	})
}

// Name and Addr are this instance's name and address in the tier.
func (t *Tier) Name() string { return t.member.Name() }

// Addr is where peers reach this instance.
func (t *Tier) Addr() string { return t.member.Addr() }

// Peers lists the other instances of the tier.
func (t *Tier) Peers() []peers.Peer { return t.member.Peers() }

// Stats are the messages counted and the shared table's size and version.
func (t *Tier) Stats() peers.Stats { return t.member.Stats() }

// Acted shares an operator action done on m here (admin). Errors are
// logged: the action is in force here either way, and the next one on m
// writes the member's whole state again.
func (t *Tier) Acted(m *balancer.Member, action string) {
	var err error
	switch action {
	case "enable", "disable", "drain", "evacuate":
		_, err = t.member.Set(flagsPrefix+m.Name, []byte(m.Flags().String()), 0)
	case "weight":
		_, err = t.member.Set(weightPrefix+m.Name, []byte(strconv.Itoa(m.Weight())), 0)
	case "recover":
		_, err = t.member.Set(recoverPrefix+m.Name, nil, recoverTTL)
	default:
		err = errors.New("not an action a tier shares")
	}
	if err != nil {
		t.log.Error("tier: action not shared", "action", action, "member", m.Name, "err", err)
	}
}

// Added shares a member added here at run time, as the --backend value
// spec.
func (t *Tier) Added(name, spec string) {
	if _, err := t.member.Set(memberPrefix+name, []byte(addValue+spec), 0); err != nil {
		t.log.Error("tier: added member not shared", "member", name, "err", err)
	}
}

// Restored shares a member this instance added again as it started (from
// --state-file; one a predecessor passed on is in the tier already), when
// the tier it joined has no record of the name: after the whole tier
// restarted, an instance that joins one already back shares its members
// with it. The flags and weight the member was restored with go first,
// where the tier holds none, so that the add does not put the member back
// to its configuration. Call it only once Join succeeded, so that a
// record the tier does hold (a removal, newer or not) wins.
func (t *Tier) Restored(name, spec string) {
	if _, known := t.member.Get(memberPrefix + name); known {
		return
	}
	if m := t.pool.Member(name); m != nil {
		cfg := m.Configured()
		for _, s := range []struct {
			prefix, value string
			changed       bool
		}{
			{flagsPrefix, m.Flags().String(), m.Flags() != cfg.Flags},
			{weightPrefix, strconv.Itoa(m.Weight()), m.Weight() != cfg.Weight},
		} {
			if _, live := t.member.Get(s.prefix + name); s.changed && !live {
				if _, err := t.member.Set(s.prefix+name, []byte(s.value), 0); err != nil {
					t.log.Error("tier: restored member's settings not shared", "member", name, "err", err)
				}
			}
		}
	}
	t.Added(name, spec)
}

// Removed shares a member removed here, drained first or not; the
// operator flags and weight it had go with it, so that a member added
// later under its name starts afresh.
func (t *Tier) Removed(name string, drained bool) {
	value := removeNowValue
	if drained {
		value = removeDrainValue
	}
	if _, err := t.member.Set(memberPrefix+name, []byte(value), 0); err != nil {
		t.log.Error("tier: removed member not shared", "member", name, "err", err)
		return
	}
	for _, prefix := range []string{flagsPrefix, weightPrefix} {
		if _, live := t.member.Get(prefix + name); live {
			if _, err := t.member.Delete(prefix + name); err != nil {
				t.log.Warn("tier: removed member's settings not forgotten", "member", name, "err", err)
			}
		}
	}
}

// apply makes a change of the shared table (local or a peer's) true of
// the pool.
func (t *Tier) apply(c peers.Change) {
	rec, live := t.member.Get(c.Key)
	prefix, name, _ := strings.Cut(c.Key, "/")
	prefix += "/"
	switch prefix {
	case movedPrefix:
		t.applyMoved(name, rec, live)
		return
	case memberPrefix:
		if live {
			t.applyMember(name, rec)
		}
		return
	}
	m := t.pool.Member(name)
	switch {
	case m == nil:
		return // a member this instance does not have
	case !live && (prefix == flagsPrefix || prefix == weightPrefix) && t.addedAfter(name, c.New.Version):
		t.reset(m, prefix, c.New.Version.Origin)
		return
	case !live:
		return // a recover expiring; or a removed member's settings
	}
	switch prefix {
	case flagsPrefix:
		f, err := balancer.ParseFlags(string(rec.Value))
		if err != nil {
			t.log.Warn("tier: bad flags from a peer", "member", name, "flags", string(rec.Value), "from", rec.Version.Origin)
			return
		}
		if f != m.Flags() {
			m.SetFlags(f)
			t.log.Info("tier: member flags set by a peer", "member", name, "flags", f.String(), "from", rec.Version.Origin)
		}
	case weightPrefix:
		w, err := strconv.Atoi(string(rec.Value))
		if err != nil || w < 1 || w > 100 {
			t.log.Warn("tier: bad weight from a peer", "member", name, "weight", string(rec.Value), "from", rec.Version.Origin)
			return
		}
		if w != m.Weight() {
			m.SetWeight(w)
			t.log.Info("tier: member weight set by a peer", "member", name, "weight", w, "from", rec.Version.Origin)
		}
	case recoverPrefix:
		if c.Old.Version != c.New.Version {
			t.pool.Recover(m)
		}
	}
}

// addedAfter reports whether the tier holds the named member as added at
// run time, by a record newer than v: a member removed and added again,
// whose operator settings the removal forgot. (Messages may come out of
// order: a removal's forgetting that arrives before the removal itself
// must not undo the evacuation of a member being drained away.)
func (t *Tier) addedAfter(name string, v peers.Version) bool {
	rec, live := t.member.Get(memberPrefix + name)
	return live && strings.HasPrefix(string(rec.Value), addValue) && rec.Version.After(v)
}

// settle makes the flags and weight of m, a member the tier added, the
// tier's: its records where there are, else m's configuration.
func (t *Tier) settle(m *balancer.Member, from string) {
	if m == nil {
		return // removed meanwhile
	}
	for _, prefix := range []string{flagsPrefix, weightPrefix} {
		if _, live := t.member.Get(prefix + m.Name); live {
			t.apply(peers.Change{Key: prefix + m.Name})
		} else {
			t.reset(m, prefix, from)
		}
	}
}

// reset gives m, a member the tier added, back its configured flags or
// weight: the tier holds none of the operators' (Removed forgot them, for
// a member removed and added again under its name), and an instance that
// saw only the last of that, or kept older ones in its --state-file, must
// not keep them.
func (t *Tier) reset(m *balancer.Member, prefix, from string) {
	cfg := m.Configured()
	switch {
	case prefix == flagsPrefix && m.Flags() != cfg.Flags:
		m.SetFlags(cfg.Flags)
		t.log.Info("tier: member flags back to its configuration", "member", m.Name, "flags", cfg.Flags.String(), "from", from)
	case prefix == weightPrefix && m.Weight() != cfg.Weight:
		m.SetWeight(cfg.Weight)
		t.log.Info("tier: member weight back to its configuration", "member", m.Name, "weight", cfg.Weight, "from", from)
	}
}

// applyMember adds or removes a member as a peer did at run time.
func (t *Tier) applyMember(name string, rec peers.Record) {
	if t.roster == nil {
		return
	}
	value, from := string(rec.Value), rec.Version.Origin
	switch {
	case strings.HasPrefix(value, addValue):
		t.addMember(name, value[len(addValue):], from)
	case value == removeNowValue || value == removeDrainValue:
		m := t.pool.Member(name)
		if m == nil {
			return
		}
		if value == removeNowValue || m.Active() == 0 {
			t.removeMember(m, rec, from) // nothing to wait for: gone before Join returns
			return
		}
		// Its requests in flight here end before it goes, off the
		// goroutine that applies changes. (The operator's instance
		// shared the evacuation before it drained the member itself.)
		t.log.Info("tier: member a peer removed waits for its requests in flight here", "member", name, "in_flight", m.Active(), "up_to", balancer.RemovalWait, "from", from)
		t.removals.Add(1)
		go func() {
			defer t.removals.Done()
			ctx, cancel := context.WithTimeout(t.ctx, balancer.RemovalWait)
			m.WaitIdle(ctx)
			cancel()
			if t.ctx.Err() != nil {
				return // stopped sharing: this instance's next one decides
			}
			t.removeMember(m, rec, from)
		}()
	default:
		t.log.Warn("tier: bad member record from a peer", "member", name, "from", from)
	}
}

// addMember adds the member a peer added as spec. One this instance has
// under the name with another spec (two operators added one name to two
// instances at once, or --backend says otherwise) is replaced: the record
// is what the tier agreed on.
func (t *Tier) addMember(name, spec, from string) {
	t.rosterMu.Lock()
	defer t.rosterMu.Unlock()
	have := t.roster.Spec(name)
	if spec == have {
		t.settle(t.pool.Member(name), from)
		return
	}
	if old := t.pool.Member(name); have != "" && old != nil {
		if err := t.roster.RemoveFromTier(old); err != nil {
			t.log.Error("tier: member not replaced as a peer added it", "member", name, "from", from, "err", err)
			return
		}
	}
	if err := t.roster.AddFromTier(spec); err != nil {
		t.log.Error("tier: member a peer added not added here", "member", name, "from", from, "replacing", have, "err", err)
		return
	}
	t.log.Info("tier: member added by a peer", "member", name, "replaced", have != "", "from", from)
	t.settle(t.pool.Member(name), from) // actions on it that arrived before it did
}

// removeMember removes m as rec, a removal by a peer, says, unless the
// tier has changed its mind since (a newer record) or m is gone already.
func (t *Tier) removeMember(m *balancer.Member, rec peers.Record, from string) {
	t.rosterMu.Lock()
	defer t.rosterMu.Unlock()
	if now, live := t.member.Get(memberPrefix + m.Name); !live || now.Version != rec.Version || t.pool.Member(m.Name) != m {
		return
	}
	if err := t.roster.RemoveFromTier(m); err != nil {
		t.log.Error("tier: member a peer removed not removed here", "member", m.Name, "from", from, "err", err)
		return
	}
	t.log.Info("tier: member removed by a peer", "member", m.Name, "in_flight", m.Active(), "from", from)
}

// applyMoved puts a shared moved session into the local table, or takes
// it out when the tier forgot it, keeping the table's idle clock in step
// with the shared record's expiry.
func (t *Tier) applyMoved(key string, rec peers.Record, live bool) {
	if !live {
		t.moved.Forget([]byte(key))
		return
	}
	why, name, ok := strings.Cut(string(rec.Value), " ")
	var reason moved.Reason
	if !ok || reason.UnmarshalText([]byte(why)) != nil {
		t.log.Warn("tier: bad moved session from a peer", "value", string(rec.Value), "from", rec.Version.Origin)
		return
	}
	m := t.pool.Member(name)
	if m == nil {
		return
	}
	lastUsed := rec.Expires.Add(-t.ttl)
	t.moved.Restore([]moved.Entry{{Key: key, Member: m.Index(), Reason: reason, LastUsed: lastUsed}}, time.Now())
}

// observer shares what the pool does to its moved-session table.
type observer struct{ t *Tier }

func (o observer) Moved(e moved.Entry) { o.t.share(e) }

// Used refreshes the session's shared record, so that it expires on no
// instance while one still serves it; a record the tier lacks (say, a
// session restored from a hand-off before this instance joined) is
// written.
func (o observer) Used(e moved.Entry) {
	if !o.t.member.Touch(movedPrefix+e.Key, o.t.ttl) {
		o.t.share(e)
	}
}

func (o observer) Forgotten(key string) {
	if _, live := o.t.member.Get(movedPrefix + key); live {
		if _, err := o.t.member.Delete(movedPrefix + key); err != nil {
			o.t.log.Warn("tier: forgotten session not shared", "err", err)
		}
	}
}

// share writes a moved session, unless the tier holds it already (every
// instance that sees the same failure moves the session to the same
// partner: one record is enough).
func (t *Tier) share(e moved.Entry) {
	m := t.pool.At(e.Member)
	if m == nil {
		return
	}
	value := e.Reason.String() + " " + m.Name
	key := movedPrefix + e.Key
	if rec, live := t.member.Get(key); live && string(rec.Value) == value {
		t.member.Touch(key, t.ttl)
		return
	}
	if _, err := t.member.Set(key, []byte(value), t.ttl); err != nil {
		t.log.Warn("tier: moved session not shared", "err", err)
	}
}

// The question evacuate --wait asks every peer: how many requests it has
// in flight to a member. The answer is the number in decimal, or "?"
// when the peer has no such member.
const inFlightQuestion = "in-flight "

func (t *Tier) answer(_ context.Context, from string, q []byte) []byte {
	name, ok := strings.CutPrefix(string(q), inFlightQuestion)
	if !ok {
		t.log.Warn("tier: unknown question from a peer", "from", from)
		return nil
	}
	m := t.pool.Member(name)
	if m == nil {
		return []byte("?")
	}
	return []byte(strconv.FormatInt(m.Active(), 10))
}

// InFlight is what every peer says of member: how many requests it has in
// flight to it, by peer name, and which peers did not answer before ctx
// ended. A peer without the member answers -1.
func (t *Tier) InFlight(ctx context.Context, member string) (map[string]int64, []string, error) {
	a, err := t.member.Ask(ctx, []byte(inFlightQuestion+member))
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]int64, len(a.From))
	for peer, ans := range a.From {
		n, err := strconv.ParseInt(string(ans), 10, 64)
		if err != nil {
			n = -1
		}
		out[peer] = n
	}
	return out, a.Unreachable, nil
}
