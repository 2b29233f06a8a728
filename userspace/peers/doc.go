// Package peers makes several catherd instances one tier: each is a Member
// holding a copy of one replicated table, kept in step over
// github.com/hashicorp/memberlist, the gossip engine Serf and Consul run on
// (failure detection, UDP gossip, TCP state exchange, AES-GCM encryption),
// rather than a protocol of our own.
//
// The table maps string keys to opaque values (operator actions, moved
// sessions: the caller decides). Every write gets a Version: the writer's
// logical clock and its name. All members apply one rule, last writer
// wins: the higher clock, then the greater name. So whatever order writes
// arrive in, and however a partition split the tier, every member ends with
// the same record for a key. A record may expire after an idle TTL, which
// Touch extends for the version it names only (a touch can never bring
// back a value a newer write replaced); a delete leaves a tombstone, kept
// for Timing.Tombstone, so that a peer that missed the delete cannot bring
// the value back.
//
// How changes travel:
//
//   - small ones as gossip: memberlist's transmit queue sends them on UDP
//     with its own pings and gossip, a few random peers each time, and each
//     receiver relays what was new to it;
//   - large ones (more than a few packets, e.g. the thousands of sessions
//     moved when a backend fails) over TCP to every live peer at once;
//   - the whole table, both ways, when a member joins and every
//     Timing.PushPull with one random peer: what a lost packet or a
//     partition kept from a member comes back then. Join returns only once
//     the table has been merged, so a restarted instance knows the tier's
//     state before it serves.
//
// Failed peers are retried every Timing.Reconnect, so a healed partition
// merges. Ask sends a question to every peer and gathers their answers,
// naming the peers that did not answer in time.
//
// Members authenticate each other with the tier's key (memberlist's
// SecretKey): a packet or stream not sealed with it is refused and counted
// before memberlist reads it, so a peer without the key can neither join
// nor change anything. Without a key a member may only bind to loopback.
package peers
