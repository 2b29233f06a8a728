package maglev_test

import (
	"fmt"

	"github.com/catherd/catherd/userspace/maglev"
)

func ExampleBuild() {
	// Three backends; the third has twice the weight of the others. The
	// ID is the backend's index in the datapath, the key its address.
	backends := []maglev.Backend{
		{ID: 0, Key: "10.0.0.1:80", Weight: 1},
		{ID: 1, Key: "10.0.0.2:80", Weight: 1},
		{ID: 2, Key: "10.0.0.3:80", Weight: 2},
	}
	table, err := maglev.Build(backends, maglev.DefaultSize)
	if err != nil {
		panic(err)
	}
	slots := make([]int, len(backends))
	for _, id := range table {
		slots[id]++
	}
	fmt.Println("slots per backend:", slots)

	// The first backend goes down: it keeps its ID and key, and loses its
	// weight. Only the slots Diff lists need writing to the datapath.
	backends[0].Weight = 0
	next, err := maglev.Build(backends, maglev.DefaultSize)
	if err != nil {
		panic(err)
	}
	changed := maglev.Diff(table, next)
	fmt.Println("slots to rewrite:", len(changed))
	// Output:
	// slots per backend: [16385 16385 32767]
	// slots to rewrite: 16392
}
