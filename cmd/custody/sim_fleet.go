package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/mdm/mdmtest"
)

// A fleet is the sim's devices as kept in a --state directory: one JSON
// file per device under devices/, named by UDID. Without a directory it
// keeps nothing.
type fleet struct {
	dir string

	mu      sync.Mutex
	devices []*mdmtest.Device // as loaded, then as enrolled
}

func openFleet(dir string) (*fleet, error) {
	f := &fleet{dir: dir}
	if dir == "" {
		return f, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "devices"), 0o700); err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "devices", "*.json"))
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var st mdmtest.DeviceState
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		d, err := mdmtest.FromState(&st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		f.devices = append(f.devices, d)
	}
	return f, nil
}

// pick returns want devices of the fleet that can still talk to their
// server, and the serial numbers of those it lacks ("" for a random one).
// With serials, the devices are those with these serial numbers, in order.
func (f *fleet) pick(want int, serials []string) (have []*mdmtest.Device, missing []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	live := map[string]*mdmtest.Device{}
	var order []*mdmtest.Device
	for _, d := range f.devices {
		if d.Wiped() || d.Unenrolled() {
			continue
		}
		live[d.SerialNumber] = d
		order = append(order, d)
	}
	if serials == nil {
		have = order[:min(want, len(order))]
		return have, make([]string, want-len(have))
	}
	for _, s := range serials {
		if d := live[s]; d != nil {
			have = append(have, d)
		} else {
			missing = append(missing, s)
		}
	}
	return have, missing
}

// udidOf returns the UDID the fleet knew a serial number by (a device
// erased or unenrolled that enrols again keeps it), or "".
func (f *fleet) udidOf(serial string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devices {
		if serial != "" && d.SerialNumber == serial {
			return d.UDID
		}
	}
	return ""
}

// add keeps a newly enrolled device, on disk at once so that an
// interrupted run loses none.
func (f *fleet) add(d *mdmtest.Device) error {
	f.mu.Lock()
	f.devices = slices.DeleteFunc(f.devices, func(o *mdmtest.Device) bool { return o.UDID == d.UDID })
	f.devices = append(f.devices, d)
	f.mu.Unlock()
	return f.write(d)
}

// save writes every device's state (what commands changed: profiles,
// wiped, unenrolled).
func (f *fleet) save() error {
	f.mu.Lock()
	devices := slices.Clone(f.devices)
	f.mu.Unlock()
	for _, d := range devices {
		if err := f.write(d); err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) write(d *mdmtest.Device) error {
	if f.dir == "" {
		return nil
	}
	st, err := d.State()
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(f.dir, "devices", d.UDID+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// apnsCert returns the fake APNs's TLS certificate for addr, made once and
// kept in the state directory as apns.pem (the certificate, which a server
// trusts with --apns-ca) and apns.key.
func (f *fleet) apnsCert(addr string) (*tls.Certificate, string, error) {
	certPath, keyPath := filepath.Join(f.dir, "apns.pem"), filepath.Join(f.dir, "apns.key")
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return &c, certPath, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--apns-listen %q: %w", addr, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "custody sim fake APNs"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, "", err
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	return &c, certPath, err
}

// A stayReport is what the devices did while they stayed.
type stayReport struct {
	elapsed          time.Duration
	wakes, polls     int // pushes that woke a device; interval check-ins
	commands, failed int
	errs             []string
}

// stay keeps the devices answering commands until ctx ends: each push to
// the fake APNs (--apns-listen) wakes its device, and with --poll-interval
// every device also checks in that often.
func stay(cmd *cobra.Command, cfg simConfig, fl *fleet, devices []*mdmtest.Device) (*stayReport, error) {
	ctx := cmd.Context()
	rep := &stayReport{}
	var mu sync.Mutex
	note := func(wake bool, cmds int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if wake {
			rep.wakes++
		} else {
			rep.polls++
		}
		rep.commands += cmds
		if err != nil && ctx.Err() == nil && !errors.Is(err, mdmtest.ErrWiped) && !errors.Is(err, mdmtest.ErrUnenrolled) {
			rep.failed++
			if msg := err.Error(); len(rep.errs) < 3 && !slices.Contains(rep.errs, msg) {
				rep.errs = append(rep.errs, msg)
			}
		}
	}
	var wg sync.WaitGroup
	if cfg.apnsListen != "" {
		cert, certPath, err := fl.apnsCert(cfg.apnsListen)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", cfg.apnsListen)
		if err != nil {
			return nil, fmt.Errorf("--apns-listen: %w", err)
		}
		apns := mdmtest.NewAPNsListener(ln, cert)
		defer apns.Close()
		for _, d := range devices {
			apns.Register(d)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "fake APNs on %s (server flags: --apns-host %s --apns-ca %s)\n", apns.URL, apns.URL, certPath)
		wg.Go(func() {
			for {
				select {
				case w := <-apns.Wakes:
					note(true, len(w.Commands), w.Err)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	if cfg.pollEvery > 0 {
		for i, d := range devices {
			wg.Go(func() {
				// Spread the devices over the interval.
				first := time.Duration(int64(cfg.pollEvery) * int64(i) / int64(len(devices)))
				t := time.NewTimer(first)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if d.Wiped() || d.Unenrolled() {
						return
					}
					cmds, err := d.Poll(ctx)
					note(false, len(cmds), err)
					t.Reset(cfg.pollEvery)
				}
			})
		}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%d devices staying; interrupt to stop\n", len(devices))
	start := time.Now()
	<-ctx.Done()
	wg.Wait()
	rep.elapsed = time.Since(start)
	return rep, nil
}
