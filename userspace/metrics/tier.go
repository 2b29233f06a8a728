package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TierStats describe this instance's tier (--peer-listen): the peers as
// it sees them and the state messages it counted.
type TierStats struct {
	Peers []PeerStats
	// Sent and Received count state messages (gossip, direct, full-state
	// exchanges, questions and answers); Refused those turned away, by
	// reason: auth (not sealed with the tier's key), malformed, unknown
	// (from no known peer).
	Sent, Received uint64
	Refused        map[string]uint64
	// SendErrors counts messages that did not reach a peer.
	SendErrors uint64
	// Records in the shared table, and this instance's state version.
	Records int
	Version uint64
}

// PeerStats describe one peer.
type PeerStats struct {
	Name, State string
	LastContact time.Time
	Version     uint64 // the state version it last advertised
}

// refusedReasons are the reasons a state message is refused for, each a
// series.
var refusedReasons = []string{"auth", "malformed", "unknown"}

// peerStates are the states a peer is counted in, each a series.
var peerStates = []string{"alive", "suspect", "dead", "left"}

// Tier exports the tier, read at scrape time.
func (m *Metrics) Tier(read func() TierStats) {
	m.onScrape([]*prometheus.Desc{tierPeersDesc, tierPeerContactDesc, tierPeerVersionDesc, tierVersionDesc, tierRecordsDesc,
		tierMessagesDesc, tierRefusedDesc, tierSendErrorsDesc}, func(s sink) {
		st := read()
		byState := map[string]int{}
		for _, p := range st.Peers {
			byState[p.State]++
			if !p.LastContact.IsZero() {
				s.gauge(tierPeerContactDesc, float64(p.LastContact.UnixNano())/1e9, p.Name)
			}
			s.gauge(tierPeerVersionDesc, float64(p.Version), p.Name)
		}
		for _, state := range peerStates {
			s.gauge(tierPeersDesc, float64(byState[state]), state)
		}
		s.gauge(tierVersionDesc, float64(st.Version))
		s.gauge(tierRecordsDesc, float64(st.Records))
		s.counter(tierMessagesDesc, st.Sent, "sent")
		s.counter(tierMessagesDesc, st.Received, "received")
		for _, r := range refusedReasons {
			s.counter(tierRefusedDesc, st.Refused[r], r)
		}
		s.counter(tierSendErrorsDesc, st.SendErrors)
	})
}

var (
	tierPeersDesc = prometheus.NewDesc("catherd_tier_peers",
		"Other catherd instances of the tier, by state: alive, suspect (silent a few probe rounds), dead (failed; retried), left.",
		[]string{"state"}, nil)
	tierPeerContactDesc = prometheus.NewDesc("catherd_tier_peer_last_contact_timestamp_seconds",
		"When the latest packet or message came from a peer.", []string{"peer"}, nil)
	tierPeerVersionDesc = prometheus.NewDesc("catherd_tier_peer_state_version",
		"The state version (logical clock) a peer last advertised; peers that agree hold the same shared state.", []string{"peer"}, nil)
	tierVersionDesc = prometheus.NewDesc("catherd_tier_state_version",
		"This instance's state version (logical clock of the shared table).", nil, nil)
	tierRecordsDesc = prometheus.NewDesc("catherd_tier_records",
		"Records in the shared table (operator actions, moved sessions).", nil, nil)
	tierMessagesDesc = prometheus.NewDesc("catherd_tier_messages_total",
		"State messages sent to and received from peers.", []string{"direction"}, nil)
	tierRefusedDesc = prometheus.NewDesc("catherd_tier_messages_refused_total",
		"State messages and packets refused, by reason: auth (not sealed with the tier's key), malformed, unknown (from no known peer).",
		[]string{"reason"}, nil)
	tierSendErrorsDesc = prometheus.NewDesc("catherd_tier_send_errors_total",
		"State messages that did not reach a peer (the next full-state exchange repairs what they carried).", nil, nil)
)
