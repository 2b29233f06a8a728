package membership_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/catherd/catherd/userspace/membership"
)

func ExampleDecode() {
	// What a Tomcat node at 10.0.0.7 with default settings multicasts.
	datagram := membership.Append(nil, &membership.Beacon{
		AliveMillis: 1500, Port: 4000, SecurePort: -1, UDPPort: -1,
		Host: netip.MustParseAddr("10.0.0.7"),
	})

	var b membership.Beacon
	if err := membership.Decode(datagram, &b); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(datagram), b.Host, b.Port, b.IsShutdown())

	err := membership.Decode(datagram[:40], &b)
	fmt.Println(err)
	// Output:
	// 77 10.0.0.7 4000 false
	// membership: malformed beacon: body length beyond the datagram
}

func ExampleTable() {
	table := membership.NewTable(membership.Config{}) // dropTime 3 s, empty domain
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	node := &membership.Beacon{Host: netip.MustParseAddr("10.0.0.7"), Port: 4000}
	fmt.Println(table.Observe(node, start).Kind)
	fmt.Println(table.Observe(node, start.Add(500*time.Millisecond)).Kind)
	_, inGroup := table.DomainOf(netip.MustParseAddr("10.0.0.7"))
	fmt.Println(inGroup)

	// The node falls silent; the caller's ticker expires it.
	fmt.Println(len(table.Expire(start.Add(3500 * time.Millisecond)))) // exactly dropTime: stays
	for _, m := range table.Expire(start.Add(3501 * time.Millisecond)) {
		fmt.Println("expired", m.Host, m.Port)
	}
	fmt.Printf("%+v\n", table.Stats())
	// Output:
	// joined
	// refreshed
	// true
	// 0
	// expired 10.0.0.7 4000
	// {Observed:2 IgnoredWrongDomain:0 IgnoredTableFull:0 IgnoredUnknownShutdown:0 Joins:1 Restarts:0 Leaves:0 Expiries:1}
}
