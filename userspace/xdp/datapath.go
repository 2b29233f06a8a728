// Package xdp owns catherd's XDP datapath: it loads the program compiled
// from bpf/, attaches it to the edge NIC through a pinned bpf_link, keeps
// its maps pinned so that a restarted or upgraded catherd finds every
// established flow where it left it, and writes the services, backends and
// Maglev tables the program steers by. It knows nothing of health checks or
// flags: the L4 control plane (userspace/l4) decides, this package applies.
package xdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Mode is how the program attaches to the device.
type Mode string

const (
	// Native runs the program in the driver, before any socket buffer is
	// allocated: the fast path, and the default.
	Native Mode = "native"
	// Generic runs it after the kernel built a socket buffer: slower, but
	// available on every device.
	Generic Mode = "generic"
)

// Options say where and how to run the datapath.
type Options struct {
	// Ifaces are the devices the program is attached to: the edge NIC of
	// the L4 services and, when the cluster's heartbeats arrive on
	// another, that one (one program, one set of maps, a link each).
	Ifaces        []string
	Mode          Mode
	PinDir        string // a directory on a bpf filesystem
	ConntrackSize uint32
	Log           *slog.Logger
	// Successor says that a running catherd writes the maps pinned in
	// PinDir until it hands over to this process: Open leaves the
	// directory unclaimed while it holds it, and the caller claims it once
	// the predecessor has stopped writing (Claim). Otherwise Open claims
	// it, and fails with ErrPinsClaimed while another process holds it.
	Successor bool
}

// Datapath is the loaded, attached program and its maps.
type Datapath struct {
	objs  catherdObjects
	links []link.Link
	log   *slog.Logger

	pinDir  string
	claimMu sync.Mutex
	claim   *os.File // the pin directory, flocked while this process writes its maps (claim.go)

	ringSize    uint32 // slots per service in the maglev map
	maxServices uint32
	maxBackends uint32

	mu    sync.Mutex // serialises Sync
	state *tables
}

// Open loads the program, reopening the maps pinned in o.PinDir when they
// are compatible (so established flows survive), and attaches it to each
// of o.Ifaces, atomically replacing a previous catherd program there. A
// device an earlier catherd attached to and this one does not want is
// given back to plain kernel networking.
func Open(o Options) (*Datapath, error) {
	var ifaces []*net.Interface
	for _, name := range o.Ifaces {
		iface, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("no interface named %q", name)
		}
		ifaces = append(ifaces, iface)
	}
	d, err := load(o)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, iface := range ifaces {
		l, err := attach(d.objs.CatherdXdp, iface, o.Mode, o.PinDir, d.log)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.links = append(d.links, l)
		wanted[linkPin(iface)] = true
	}
	if err := detachStale(o.PinDir, wanted, d.log); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// linkPin names the pinned link of iface.
func linkPin(iface *net.Interface) string { return "link-" + iface.Name }

// detachPinned detaches the pinned link at path and removes its pin. The
// detach is explicit: dropping the pin alone lets the kernel release the link
// later, from a work queue, so the device could still run the program when
// catherd says it is gone (and a new attach could find it busy).
func detachPinned(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		// Not a link we can open (a kernel too old to load it back, or a
		// stray file): the pin is still ours to remove.
		if rmErr := os.Remove(path); rmErr != nil {
			return fmt.Errorf("open pinned link %s: %w", path, errors.Join(err, rmErr))
		}
		return nil
	}
	defer l.Close()
	return release(l)
}

// release detaches l and removes its pin.
func release(l link.Link) error {
	// A link whose device has gone is already detached: ENOLINK is fine.
	if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) {
		return fmt.Errorf("detach XDP link: %w", err)
	}
	return l.Unpin()
}

// detachStale detaches pinned links other than the wanted ones.
func detachStale(dir string, wanted map[string]bool, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link-") || wanted[e.Name()] {
			continue
		}
		log.Info("detaching XDP from a device no longer wanted", "link", e.Name())
		if err := detachPinned(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// loadError turns a failed load into one line: a verifier's refusal keeps
// its last line (the whole log goes to the log), and a refusal for want of
// privilege says which capabilities catherd needs.
func loadError(err error, log *slog.Logger) error {
	var hint string
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		hint = " (catherd needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		log.Error("the kernel's verifier refused the XDP program", "log", strings.Join(ve.Log, "\n"))
		last := ve.Log[len(ve.Log)-1]
		for i := len(ve.Log) - 1; i >= 0 && strings.HasPrefix(last, "processed "); i-- {
			last = ve.Log[i] // the line before the statistics says why
		}
		return fmt.Errorf("load XDP program: %v: verifier: %s%s", ve.Cause, strings.TrimSpace(last), hint)
	}
	return fmt.Errorf("load XDP program: %w%s", err, hint)
}

// Verify has the kernel load the program and create its maps, as Open
// would with a connection table of conntrackSize, but pins, reuses and
// attaches nothing, and releases them at once: it checks that the program
// passes this kernel's verifier with this process's privileges (catherd
// run --check), beside a catherd that runs the datapath.
func Verify(conntrackSize uint32) error {
	spec, err := loadCatherd()
	if err != nil {
		return fmt.Errorf("read the embedded XDP object: %w", err)
	}
	if conntrackSize != 0 {
		spec.Maps["conntrack"].MaxEntries = conntrackSize
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone // nothing pinned: the running catherd's maps stay untouched
	}
	var objs catherdObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return loadError(err, slog.New(slog.DiscardHandler))
	}
	return objs.Close()
}

// load does all of Open but attaching.
func load(o Options) (*Datapath, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	spec, err := loadCatherd()
	if err != nil {
		return nil, fmt.Errorf("read the embedded XDP object: %w", err)
	}
	if o.ConntrackSize != 0 {
		spec.Maps["conntrack"].MaxEntries = o.ConntrackSize
	}
	if err := preparePinDir(o.PinDir); err != nil {
		return nil, err
	}
	d := &Datapath{log: o.Log, pinDir: o.PinDir}
	if err := d.tryClaim(); err != nil && (!o.Successor || !errors.Is(err, ErrPinsClaimed)) {
		return nil, err
	}
	if err := dropIncompatiblePins(spec, o.PinDir, o.Log); err != nil {
		d.Unclaim()
		return nil, err
	}
	if err := spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: o.PinDir}}); err != nil {
		d.Unclaim()
		return nil, loadError(err, o.Log)
	}
	d.maxServices = spec.Maps["services"].MaxEntries
	d.maxBackends = spec.Maps["backends"].MaxEntries
	d.ringSize = spec.Maps["maglev"].MaxEntries / d.maxServices
	if d.state, err = readTables(&d.objs.catherdMaps); err != nil {
		d.objs.Close()
		d.Unclaim()
		return nil, err
	}
	return d, nil
}

// Close releases this process's handles. The program stays attached and
// the maps stay pinned: that is what lets the next catherd carry on with
// every flow. Use Unload to take the datapath away.
func (d *Datapath) Close() error {
	d.Unclaim()
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, d.objs.Close())...)
}

// bpffsRoot is where Linux distributions mount the bpf filesystem.
const bpffsRoot = "/sys/fs/bpf"

// preparePinDir creates dir and checks that it lives on a bpf filesystem,
// mounting one at /sys/fs/bpf first when dir is below it and nothing is
// mounted there (as on hosts without systemd's mount): pinning elsewhere
// fails with an error that does not say why.
func preparePinDir(dir string) error {
	if strings.HasPrefix(filepath.Clean(dir), bpffsRoot+"/") && !onBPFFS(bpffsRoot) {
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount the bpf filesystem on %s: %w", bpffsRoot, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	if !onBPFFS(dir) {
		return fmt.Errorf("pin directory %s is not on a bpf filesystem (mount one: mount -t bpf bpf %s)", dir, bpffsRoot)
	}
	return nil
}

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// dropIncompatiblePins removes pinned maps whose shape no longer matches
// this program's (a new --conntrack-size, a map that grew in an upgrade),
// so that loading creates them afresh instead of failing. Losing the
// connection table this way is logged: established flows then take their
// Maglev backend, which is the same one unless the backend set changed.
func dropIncompatiblePins(spec *ebpf.CollectionSpec, dir string, log *slog.Logger) error {
	for name, ms := range spec.Maps {
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			err = ms.Compatible(m)
			m.Close()
			if err == nil {
				continue
			}
		}
		log.Warn("replacing pinned map that no longer fits", "map", name, "reason", err)
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale pinned map: %w", err)
		}
	}
	return nil
}

// attach points iface at prog. A pinned link from an earlier catherd on the
// same device and mode is updated in place, which swaps programs atomically:
// no packet sees a device without a program. Otherwise a new link is made.
func attach(prog *ebpf.Program, iface *net.Interface, mode Mode, dir string, log *slog.Logger) (link.Link, error) {
	path := filepath.Join(dir, linkPin(iface))
	old, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		if attachedHere(old, iface, mode) {
			if err := old.Update(prog); err == nil {
				return old, nil
			}
		}
		log.Info("replacing the pinned XDP link", "iface", iface.Name, "mode", mode)
		err := release(old)
		old.Close()
		if err != nil {
			return nil, fmt.Errorf("replace the XDP link of %s: %w", iface.Name, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("open pinned link %s: %w", path, err)
	}

	flags := link.XDPDriverMode
	if mode == Generic {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: flags})
	switch {
	case err == nil:
	case mode != Generic && errors.Is(err, unix.EOPNOTSUPP):
		return nil, fmt.Errorf("the driver of %s has no native XDP (use --xdp-mode generic): %w", iface.Name, err)
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		return nil, fmt.Errorf("%s already has an XDP program that is not catherd's (remove it: ip link set dev %s xdp off): %w", iface.Name, iface.Name, err)
	default:
		return nil, fmt.Errorf("attach XDP to %s in %s mode: %w", iface.Name, mode, err)
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin XDP link: %w", err)
	}
	return l, nil
}

// attachedHere says whether l is attached to iface in mode.
func attachedHere(l link.Link, iface *net.Interface, mode Mode) bool {
	info, err := l.Info()
	if err != nil || info.XDP() == nil || int(info.XDP().Ifindex) != iface.Index {
		return false
	}
	dev, err := netlink.LinkByIndex(iface.Index)
	if err != nil || dev.Attrs().Xdp == nil {
		return false
	}
	want := uint32(nl.XDP_ATTACHED_DRV)
	if mode == Generic {
		want = nl.XDP_ATTACHED_SKB
	}
	return dev.Attrs().Xdp.AttachMode == want
}

// Unload detaches catherd's program and removes its pinned maps from dir.
// Established flows are forgotten.
func Unload(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pin directory: %w", err)
	}
	// Links first, detached before the maps they use are unpinned.
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "link-") {
			if err := detachPinned(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link-") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
