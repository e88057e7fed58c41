package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm/mdmtest"
)

func simCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Drive simulated devices against an MDM server"}
	cmd.AddCommand(simAppleCmd())
	cmd.AddCommand(simAndroidCmd())
	return cmd
}

func simAppleCmd() *cobra.Command {
	var cfg simConfig
	cmd := &cobra.Command{
		Use:   "apple (--enroll-url URL | --server URL --token T | --data DIR)",
		Short: "Enrol simulated Apple devices, measure check-ins and command round trips, and keep them running",
		Long: `Enrol simulated Apple devices against an MDM server, then measure idle
check-ins and command round trips, with a progress bar per phase and, at the
end, throughput and latency percentiles (p50, p95, p99) per operation.

The devices send what Apple's devices send (content types, User-Agent, the
keys of Apple's schema for their platform), so this works with any server
that follows Apple's protocol. With --enroll-url every device fetches that
profile URL and then answers whatever commands the server sends. With a
custody server (--server and --token, or --data) each device gets a one-time
link, and the round-trip phase queues --commands DeviceInformation commands
per device through the admin API. When the server exposes
process_cpu_seconds_total on /metrics, the server's CPU time per operation
is reported too, and when it is a custody server, its own latency
percentiles for MDM requests (from custody_http_request_seconds), which
leave out the time requests wait in the load generator.

A fleet for testing an MDM:
  --state DIR     keeps the devices (keys, certificates, enrollment, installed
                  profiles) in DIR; a later run reconnects the same fleet and
                  enrols only the devices it lacks.
  --stay          after the phases, keeps the devices running, answering
                  commands that arrive later, until interrupted: woken by
                  pushes to a fake APNs (--apns-listen, whose certificate is
                  --state's apns.pem) or by polling every --poll-interval.
  --serials FILE  the devices take these serial numbers (one per line, or the
                  first column of a CSV), in order.
  --ring NAME     the devices are the Apple records of that campaign ring that
                  have not enrolled (custody servers).
  --links         each device enrols through a one-time link bound to its
                  record (custody servers; implied by --ring), so the
                  pre-enrolled-only restriction admits it.

A phase goes on past a device that fails, and the report counts what really
finished; the command exits non-zero when any device failed or the run was
interrupted before its phases were done.

Each device signs every distinct body once and reuses the signature when it
sends the same body again (its idle check-ins), so that the load generator's
RSA signatures do not crowd out the server it measures on a shared machine;
--fresh-signatures signs every request anew. Like custody serve, the sim runs
at GOGC=400 unless GOGC is set.`,
		Args: cobra.NoArgs,
	}
	client := addAPIFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.enrollURL, "enroll-url", "", "a profile URL every device fetches (any MDM server)")
	f.IntVar(&cfg.devices, "devices", 10, "number of devices (with --serials or --ring, all of them unless given)")
	f.IntVar(&cfg.concurrency, "concurrency", 8, "devices talking at once")
	f.IntVar(&cfg.checkins, "checkins", 5, "idle check-ins per device")
	f.IntVar(&cfg.commands, "commands", 5, "command round trips per device (custody servers)")
	f.StringVar(&cfg.caFile, "ca", "", "PEM CA that signs the server's profiles and TLS certificate")
	f.IntVar(&cfg.keys, "keys", 0, "lend the devices this many RSA keys, made before the run, instead of each making its own (an RSA-2048 key costs the simulator about 60 ms, the server nothing)")
	f.BoolVar(&cfg.freshSignatures, "fresh-signatures", false, "sign every request anew (by default a device reuses the signature of an unchanged idle body, which spares the load generator an RSA signature per idle check-in)")
	f.StringVar(&cfg.platform, "platform", "ios", "the devices' platform: ios or macos")
	f.StringVar(&cfg.state, "state", "", "keep the fleet in this directory and reconnect it on later runs")
	f.BoolVar(&cfg.stay, "stay", false, "after the phases, keep the devices answering commands until interrupted")
	f.DurationVar(&cfg.pollEvery, "poll-interval", 0, "with --stay, each device also checks in this often (0: only when pushed)")
	f.StringVar(&cfg.apnsListen, "apns-listen", "", "with --stay, run a fake APNs on this address whose pushes wake the devices (point the server's --apns-host at it and its --apns-ca at --state's apns.pem)")
	f.StringVar(&cfg.serials, "serials", "", "a file of serial numbers the devices take, one per line or in a CSV's first column")
	f.StringVar(&cfg.ring, "ring", "", "enrol the Apple records of this campaign ring that have not enrolled, each through its own link")
	f.BoolVar(&cfg.links, "links", false, "enrol each device through a one-time link bound to its record (custody servers)")
	f.IntSliceVar(&cfg.serverPIDs, "server-pid", nil, "read the server's CPU time from /proc for these processes (repeat it, e.g. for an MDM server and its SCEP server) instead of its /metrics: how a server without custody's metrics is measured side by side")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cfg.devices < 1 || cfg.concurrency < 1 || cfg.checkins < 0 || cfg.commands < 0 || cfg.keys < 0 || cfg.pollEvery < 0 {
			return errors.New("--devices and --concurrency must be positive, --checkins, --commands, --keys and --poll-interval not negative")
		}
		cfg.devicesGiven = cmd.Flags().Changed("devices")
		switch cfg.platform {
		case "ios":
			cfg.platform = mdmtest.PlatformIOS
		case "macos":
			cfg.platform = mdmtest.PlatformMacOS
		default:
			return fmt.Errorf("--platform %q: want ios or macos", cfg.platform)
		}
		switch {
		case cfg.stay && cfg.pollEvery == 0 && cfg.apnsListen == "":
			return errors.New("--stay needs --apns-listen or --poll-interval: otherwise nothing would wake the devices")
		case !cfg.stay && (cfg.pollEvery != 0 || cfg.apnsListen != ""):
			return errors.New("--poll-interval and --apns-listen keep devices running: give --stay too")
		case cfg.apnsListen != "" && cfg.state == "":
			return errors.New("--apns-listen keeps its certificate in --state: give --state too")
		case cfg.serials != "" && cfg.ring != "":
			return errors.New("give --serials or --ring, not both")
		case cfg.enrollURL != "" && (cfg.ring != "" || cfg.links):
			return errors.New("--ring and --links mint links on a custody server: they cannot go with --enroll-url")
		}
		var api *apiClient
		if cfg.enrollURL == "" {
			var err error
			if api, err = client(); err != nil {
				return fmt.Errorf("give --enroll-url, or a custody server (%w)", err)
			}
		}
		setGCPercent()
		return runSimApple(cmd, cfg, api)
	}
	return cmd
}

type simConfig struct {
	enrollURL    string
	devices      int
	devicesGiven bool
	concurrency  int
	checkins     int
	commands     int
	caFile       string
	// keys, when positive, is how many RSA keys the devices share.
	keys int
	// freshSignatures makes every request carry a new signature, as a
	// device does, instead of reusing one for repeated idle bodies.
	freshSignatures bool
	platform        string
	state           string
	stay            bool
	pollEvery       time.Duration
	apnsListen      string
	serials         string
	ring            string
	links           bool
	serverPIDs      []int
}

// latencies collects request timings per kind of request.
type latencies struct {
	mu     sync.Mutex
	byKind map[string][]time.Duration
	errors map[string]int
}

func (l *latencies) observe(kind string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			l.errors[kind]++
		}
		return
	}
	l.byKind[kind] = append(l.byKind[kind], took)
}

func (l *latencies) take() map[string][]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.byKind
	l.byKind = map[string][]time.Duration{}
	return out
}

type phase struct {
	name    string
	planned int
	outcome
	elapsed time.Duration
	cpu     float64 // server CPU seconds, or -1
	timings map[string][]time.Duration
	server  []bucket // the server's own latency histogram over the phase
	// serverWhat labels server in the report.
	serverWhat string
}

// A meter measures phases: their outcome and duration, the timings lat
// collected, and, from the server's /metrics when metricsURL is set, its
// CPU time and its own latency histogram for route (the devices'
// requests: "mdm", "android-push"), labelled what.
type meter struct {
	hc         *http.Client
	metricsURL string
	route      string
	what       string
	lat        *latencies
	// pids, when set, are the server's processes (a server and its SCEP
	// server, say) whose CPU time is read from /proc instead of /metrics.
	pids []int
}

func (m meter) measure(name string, ops int, fn func() outcome) phase {
	st0 := scrape(m.hc, m.metricsURL, m.route)
	cpu0 := procCPU(m.pids)
	start := time.Now()
	o := fn()
	p := phase{name: name, planned: ops, outcome: o, elapsed: time.Since(start), cpu: -1, timings: m.lat.take(), serverWhat: m.what}
	st1 := scrape(m.hc, m.metricsURL, m.route)
	if cpu1 := procCPU(m.pids); len(m.pids) > 0 {
		st0.cpu, st1.cpu = cpu0, cpu1
	}
	if st0.cpu >= 0 && st1.cpu >= 0 {
		p.cpu = st1.cpu - st0.cpu
	}
	p.server = st1.since(st0)
	return p
}

// enqueueChunk is how many devices the sim names in one enqueue request.
var enqueueChunk = 10_000

// errSimFailed is what the sim returns when the report shows failures.
var errSimFailed = errors.New("sim: some devices failed (see the report)")

func runSimApple(cmd *cobra.Command, cfg simConfig, api *apiClient) (err error) {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency * 2}}
	var roots *x509.CertPool
	if cfg.caFile != "" {
		pemData, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return err
		}
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pemData)
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	fleet, err := openFleet(cfg.state)
	if err != nil {
		return err
	}
	serials, macs, err := simSerials(cmd, cfg, api)
	if err != nil {
		return err
	}
	want := cfg.devices
	if serials != nil {
		if cfg.devicesGiven && cfg.devices > len(serials) {
			return fmt.Errorf("--devices %d, but only %d serial numbers", cfg.devices, len(serials))
		}
		if !cfg.devicesGiven {
			want = len(serials)
		}
		if want == 0 {
			return errors.New("no serial numbers to enrol")
		}
		serials = serials[:want]
	}
	lat := &latencies{byKind: map[string][]time.Duration{}, errors: map[string]int{}}
	metricsURL := ""
	if api != nil {
		metricsURL = api.url + "/metrics"
	}
	var phases []phase
	var stayed *stayReport
	// What was done is reported even when a phase fails or the run is
	// interrupted, and the fleet is saved.
	defer func() {
		if saveErr := fleet.save(); saveErr != nil && err == nil {
			err = saveErr
		}
		if len(phases) > 0 || stayed != nil {
			report(out, fmt.Sprintf("custody sim apple: %d devices, concurrency %d", cfg.devices, cfg.concurrency), phases, stayed, lat)
		}
		if err == nil && ctx.Err() != nil && !cfg.stay {
			err = fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}()
	m := meter{hc: hc, metricsURL: metricsURL, route: "mdm", what: "(server side, all MDM requests)", lat: lat, pids: cfg.serverPIDs}
	measure := func(name string, ops int, fn func() outcome) outcome {
		p := m.measure(name, ops, fn)
		phases = append(phases, p)
		return p.outcome
	}

	// The fleet: devices kept from an earlier run, then new ones.
	devices, missing := fleet.pick(want, serials)
	for _, d := range devices {
		d.Observe, d.HTTPClient, d.ReuseSignatures = lat.observe, hc, !cfg.freshSignatures
	}
	if len(devices) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "reconnecting %d devices from %s\n", len(devices), cfg.state)
	}
	keys := make([]*rsa.PrivateKey, min(cfg.keys, len(missing)))
	if len(keys) > 0 {
		bar := newBar(cmd, len(keys), "making keys")
		o := forEach(ctx, len(keys), runtime.GOMAXPROCS(0), bar, func(i int) (err error) {
			keys[i], err = rsa.GenerateKey(rand.Reader, 2048)
			return err
		})
		if o.failed > 0 || o.interrupted {
			return fmt.Errorf("making keys: %s", o.summary())
		}
	}

	// Phase 1: enrol the devices the fleet lacks.
	if len(missing) > 0 {
		enrolled := make([]*mdmtest.Device, len(missing))
		o := measure("enrol", len(missing), func() outcome {
			bar := newBar(cmd, len(missing), "enrolling")
			return forEach(ctx, len(missing), cfg.concurrency, bar, func(i int) error {
				url, err := simEnrollURL(cmd, cfg, api, missing[i])
				if err != nil {
					return err
				}
				opts := mdmtest.EnrollOptions{Roots: roots, HTTPClient: hc, Observe: lat.observe,
					SerialNumber: missing[i], UDID: fleet.udidOf(missing[i]), Platform: cfg.platform}
				if macs[missing[i]] {
					opts.Platform = mdmtest.PlatformMacOS
				}
				if len(keys) > 0 {
					opts.Key = keys[i%len(keys)]
				}
				start := time.Now()
				d, err := mdmtest.Enroll(ctx, url, opts)
				lat.observe("Enrol (profile, SCEP, check-in)", time.Since(start), err)
				if err != nil {
					return err
				}
				d.ReuseSignatures = !cfg.freshSignatures
				enrolled[i] = d
				return fleet.add(d)
			})
		})
		devices = append(devices, slices.DeleteFunc(enrolled, func(d *mdmtest.Device) bool { return d == nil })...)
		if o.interrupted {
			return nil
		}
	}
	if len(devices) == 0 {
		return errSimFailed
	}

	// Phase 2: idle check-ins.
	if cfg.checkins > 0 {
		o := measure("idle check-ins", len(devices)*cfg.checkins, func() outcome {
			bar := newBar(cmd, len(devices)*cfg.checkins, "idle check-ins")
			return forEach(ctx, len(devices)*cfg.checkins, cfg.concurrency, bar, func(i int) error {
				_, err := devices[i%len(devices)].Poll(ctx)
				return err
			})
		})
		if o.interrupted {
			return nil
		}
	}

	// Phase 3: command round trips, queued through a custody admin API.
	if api != nil && cfg.commands > 0 {
		ids := make([]string, len(devices))
		for i, d := range devices {
			ids[i] = d.UDID
		}
		for range cfg.commands {
			// In requests of enqueueChunk devices, within the API's body cap.
			for chunk := range slices.Chunk(ids, enqueueChunk) {
				req := commandRequest{Devices: chunk, RequestType: "DeviceInformation",
					Keys: map[string]any{"Queries": []any{"UDID", "SerialNumber", "OSVersion"}}, NoPush: true}
				if err := api.call(cmd, http.MethodPost, "/api/v1/commands", req, &commandResponse{}); err != nil {
					return err
				}
			}
		}
		o := measure("command round trips", len(devices)*cfg.commands, func() outcome {
			bar := newBar(cmd, len(devices), "command round trips")
			o := forEach(ctx, len(devices), cfg.concurrency, bar, func(i int) error {
				done, err := devices[i].Poll(ctx)
				if err == nil && len(done) != cfg.commands {
					err = fmt.Errorf("device %s ran %d commands, want %d", devices[i].UDID, len(done), cfg.commands)
				}
				return err
			})
			// Counted in commands, as planned.
			o.done *= cfg.commands
			o.failed *= cfg.commands
			return o
		})
		if o.interrupted {
			return nil
		}
	}

	if cfg.stay {
		if stayed, err = stay(cmd, cfg, fleet, devices); err != nil {
			return err
		}
	}
	for _, p := range phases {
		if p.failed > 0 {
			return errSimFailed
		}
	}
	if stayed != nil && stayed.failed > 0 {
		return errSimFailed
	}
	return nil
}

// An outcome is what a phase really did.
type outcome struct {
	done, failed int
	errs         []string // the first few distinct errors
	interrupted  bool
}

func (o outcome) summary() string {
	s := fmt.Sprintf("%d done, %d failed", o.done, o.failed)
	if o.interrupted {
		s += ", interrupted"
	}
	if len(o.errs) > 0 {
		s += ": " + strings.Join(o.errs, "; ")
	}
	return s
}

// forEach runs fn(0..n-1) on at most conc goroutines and counts what
// succeeded and what failed. A failure does not stop the others; an
// interruption (ctx done) does, and what it cut short counts as neither.
func forEach(ctx context.Context, n, conc int, bar *progressbar.ProgressBar, fn func(i int) error) outcome {
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var o outcome
	for range min(conc, n) {
		wg.Go(func() {
			for i := range next {
				err := fn(i)
				mu.Lock()
				switch {
				case err == nil:
					o.done++
				case ctx.Err() != nil:
					// Cut short by the interruption.
				default:
					o.failed++
					if msg := err.Error(); len(o.errs) < 3 && !slices.Contains(o.errs, msg) {
						o.errs = append(o.errs, msg)
					}
				}
				mu.Unlock()
				bar.Add(1)
			}
		})
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	bar.Finish()
	o.interrupted = ctx.Err() != nil && o.done+o.failed < n
	return o
}

// simEnrollURL returns the profile URL a device fetches: --enroll-url, a
// link bound to its record (--links, --ring) or a fresh one-time link.
func simEnrollURL(cmd *cobra.Command, cfg simConfig, api *apiClient, serial string) (string, error) {
	if cfg.enrollURL != "" {
		return cfg.enrollURL, nil
	}
	var link enrollmentResponse
	if serial != "" && (cfg.links || cfg.ring != "") {
		err := api.call(cmd, http.MethodPost, "/api/v1/links", linkRequest{Serial: serial, Note: "custody sim"}, &link)
		return link.URL, err
	}
	err := api.call(cmd, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{Note: "custody sim"}, &link)
	return link.URL, err
}

// simSerials returns the serial numbers the devices take: those of
// --serials or --ring, or nil for random ones; and, for a ring, those of
// its records that are Macs.
func simSerials(cmd *cobra.Command, cfg simConfig, api *apiClient) (serials []string, macs map[string]bool, err error) {
	switch {
	case cfg.serials != "":
		serials, err = readSerials(cfg.serials)
		return serials, nil, err
	case cfg.ring != "":
		var ring ringJSON
		if err := api.call(cmd, http.MethodGet, "/api/v1/rings/"+url.PathEscape(cfg.ring)+"?targets=not-enrolled", nil, &ring); err != nil {
			return nil, nil, err
		}
		macs = map[string]bool{}
		for _, t := range ring.Targets {
			serial, _ := enroll.ParseRef(t.Ref)
			if serial != "" && (t.Platform == enroll.PlatformIOS || t.Platform == enroll.PlatformMacOS || t.Platform == "") {
				serials = append(serials, serial)
				macs[serial] = t.Platform == enroll.PlatformMacOS
			}
		}
		if len(serials) == 0 {
			return nil, nil, fmt.Errorf("ring %s has no Apple records left to enrol", cfg.ring)
		}
	}
	return serials, macs, nil
}

// readSerials reads serial numbers one per line, or from the first column
// of a CSV file (a header naming a serial column is skipped), ignoring
// blank lines and duplicates.
func readSerials(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var serials []string
	seen := map[string]bool{}
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s := strings.TrimSpace(rec[0])
		if s == "" || seen[s] || line == 1 && strings.Contains(strings.ToLower(s), "serial") {
			continue
		}
		seen[s] = true
		serials = append(serials, s)
	}
	if len(serials) == 0 {
		return nil, fmt.Errorf("%s: no serial numbers", path)
	}
	return serials, nil
}

func newBar(cmd *cobra.Command, n int, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("ops"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// newCountBar counts work of unknown size.
func newCountBar(cmd *cobra.Command, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// procCPU returns the CPU seconds (user and system) the processes have
// used, from /proc/PID/stat, or -1 when there are none or one cannot be
// read. The kernel counts in USER_HZ, 100 on Linux.
func procCPU(pids []int) float64 {
	if len(pids) == 0 {
		return -1
	}
	total := 0.0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		// pid (comm) state ppid … utime stime: fields 14 and 15, counted
		// after the command name, which may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			return -1
		}
		utime, err1 := strconv.ParseFloat(f[11], 64)
		stime, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return -1
		}
		total += (utime + stime) / 100
	}
	return total
}

// serverStats is what the sim reads from a server's Prometheus endpoint:
// the process's CPU seconds (-1 when absent) and the cumulative buckets of
// custody's latency histogram for one route's requests (nil when absent).
type serverStats struct {
	cpu     float64
	buckets []bucket
}

// A bucket is one cumulative histogram bucket: count observations ≤ le.
type bucket struct{ le, count float64 }

// scrape reads a server's CPU seconds and its latency histogram for
// route's requests ("mdm" for the MDM protocol).
func scrape(hc *http.Client, url, route string) serverStats {
	st := serverStats{cpu: -1}
	if url == "" {
		return st
	}
	bucketPrefix := `custody_http_request_seconds_bucket{route="` + route + `",le="`
	resp, err := hc.Get(url)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				st.cpu = f
			}
		} else if v, ok := strings.CutPrefix(line, bucketPrefix); ok {
			le, count, ok := strings.Cut(v, `"} `)
			l, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			c, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
			if ok && err1 == nil && err2 == nil {
				st.buckets = append(st.buckets, bucket{l, c})
			}
		}
	}
	return st
}

// since returns the buckets of the observations made after prev. A
// histogram absent from prev had no observations yet (a route's series
// appears with its first request).
func (st serverStats) since(prev serverStats) []bucket {
	if len(st.buckets) > 0 && len(prev.buckets) == 0 && prev.cpu >= 0 {
		return st.buckets
	}
	if len(st.buckets) == 0 || len(st.buckets) != len(prev.buckets) {
		return nil
	}
	out := make([]bucket, len(st.buckets))
	for i, b := range st.buckets {
		out[i] = bucket{b.le, b.count - prev.buckets[i].count}
	}
	return out
}

// quantile estimates the q-quantile of a cumulative histogram the way
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds it.
func quantile(buckets []bucket, q float64) time.Duration {
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return 0
	}
	rank := q * buckets[len(buckets)-1].count
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(lower * float64(time.Second))
			}
			v := lower + (b.le-lower)*(rank-below)/(b.count-below)
			return time.Duration(v * float64(time.Second))
		}
		lower, below = b.le, b.count
	}
	return time.Duration(lower * float64(time.Second))
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

// report prints the sim's report under its title ("custody sim apple: 10
// devices, concurrency 8").
func report(w io.Writer, title string, phases []phase, stayed *stayReport, lat *latencies) {
	fmt.Fprintf(w, "%s\n\n", title)
	for _, p := range phases {
		rate := float64(p.done) / p.elapsed.Seconds()
		fmt.Fprintf(w, "%s: %d in %s (%.1f/s)", p.name, p.done, p.elapsed.Round(time.Millisecond), rate)
		if p.cpu >= 0 && p.done > 0 {
			fmt.Fprintf(w, ", server CPU %s per op", time.Duration(p.cpu/float64(p.done)*float64(time.Second)).Round(time.Microsecond))
		}
		if p.failed > 0 || p.interrupted {
			fmt.Fprintf(w, "; %d of %d planned done, %d failed", p.done, p.planned, p.failed)
			if p.interrupted {
				fmt.Fprint(w, ", interrupted")
			}
		}
		fmt.Fprintln(w)
		for _, e := range p.errs {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
		kinds := make([]string, 0, len(p.timings))
		for k := range p.timings {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			t := p.timings[k]
			slices.Sort(t)
			fmt.Fprintf(w, "  %-32s n=%-6d p50 %-9s p95 %-9s p99 %s\n", k, len(t),
				percentile(t, 0.50).Round(10*time.Microsecond), percentile(t, 0.95).Round(10*time.Microsecond),
				percentile(t, 0.99).Round(10*time.Microsecond))
		}
		if n := len(p.server); n > 0 && p.server[n-1].count > 0 {
			fmt.Fprintf(w, "  %-32s n=%-6.0f p50 %-9s p95 %-9s p99 %s\n", p.serverWhat, p.server[n-1].count,
				quantile(p.server, 0.50).Round(10*time.Microsecond), quantile(p.server, 0.95).Round(10*time.Microsecond),
				quantile(p.server, 0.99).Round(10*time.Microsecond))
		}
	}
	if stayed != nil {
		fmt.Fprintf(w, "stayed %s: %d commands answered, %d wakes by push, %d interval check-ins, %d failed\n",
			stayed.elapsed.Round(100*time.Millisecond), stayed.commands, stayed.wakes, stayed.polls, stayed.failed)
		for _, e := range stayed.errs {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
	}
	lat.mu.Lock()
	defer lat.mu.Unlock()
	kinds := slices.Sorted(maps.Keys(lat.errors))
	for _, k := range kinds {
		fmt.Fprintf(w, "errors: %s %d\n", k, lat.errors[k])
	}
}
