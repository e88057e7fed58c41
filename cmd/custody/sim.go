package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/mdm/mdmtest"
)

func simCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Drive simulated devices against an MDM server"}
	cmd.AddCommand(simAppleCmd())
	return cmd
}

type simConfig struct {
	enrollURL   string
	devices     int
	concurrency int
	checkins    int
	commands    int
	caFile      string
	// keys, when positive, is how many RSA keys the devices share.
	keys int
	// freshSignatures makes every request carry a new signature, as a
	// device does, instead of reusing one for repeated idle bodies.
	freshSignatures bool
}

func simAppleCmd() *cobra.Command {
	var cfg simConfig
	cmd := &cobra.Command{
		Use:   "apple (--enroll-url URL | --server URL --token T | --data DIR)",
		Short: "Enrol simulated Apple devices and measure check-ins and command round trips",
		Long: `Enrol simulated Apple devices against an MDM server, then measure idle
check-ins and command round trips, with a progress bar per phase and, at the
end, throughput and latency percentiles (p50, p95, p99) per operation.

With --enroll-url every device fetches that profile URL, so this works with
any server that follows Apple's protocol; devices then answer whatever
commands that server sends. With a custody server (--server and --token, or
--data) each device gets a one-time link, and the round-trip phase queues
--commands DeviceInformation commands per device through the admin API.
When the server exposes process_cpu_seconds_total on /metrics, the server's
CPU time per operation is reported too, and when it is a custody server, its
own latency percentiles for MDM requests (from custody_http_request_seconds),
which leave out the time requests wait in the load generator.

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
	f.IntVar(&cfg.devices, "devices", 10, "number of devices")
	f.IntVar(&cfg.concurrency, "concurrency", 8, "devices talking at once")
	f.IntVar(&cfg.checkins, "checkins", 5, "idle check-ins per device")
	f.IntVar(&cfg.commands, "commands", 5, "command round trips per device (custody servers)")
	f.StringVar(&cfg.caFile, "ca", "", "PEM CA that signs the server's profiles and TLS certificate")
	f.IntVar(&cfg.keys, "keys", 0, "lend the devices this many RSA keys, made before the run, instead of each making its own (an RSA-2048 key costs the simulator about 60 ms, the server nothing)")
	f.BoolVar(&cfg.freshSignatures, "fresh-signatures", false, "sign every request anew (by default a device reuses the signature of an unchanged idle body, which spares the load generator an RSA signature per idle check-in)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cfg.devices < 1 || cfg.concurrency < 1 || cfg.checkins < 0 || cfg.commands < 0 || cfg.keys < 0 {
			return errors.New("--devices and --concurrency must be positive, --checkins, --commands and --keys not negative")
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
		l.errors[kind]++
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
	ops     int
	elapsed time.Duration
	cpu     float64 // server CPU seconds, or -1
	timings map[string][]time.Duration
	server  []bucket // the server's own latency histogram over the phase
}

// enqueueChunk is how many devices the sim names in one enqueue request.
var enqueueChunk = 10_000

func runSimApple(cmd *cobra.Command, cfg simConfig, api *apiClient) error {
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
	lat := &latencies{byKind: map[string][]time.Duration{}, errors: map[string]int{}}
	metricsURL := ""
	if api != nil {
		metricsURL = api.url + "/metrics"
	}
	var phases []phase
	// The phases done are reported even when a later one fails.
	defer func() {
		if len(phases) > 0 {
			report(out, cfg, phases, lat)
		}
	}()
	measure := func(name string, ops int, fn func() error) error {
		st0 := scrape(hc, metricsURL)
		start := time.Now()
		err := fn()
		p := phase{name: name, ops: ops, elapsed: time.Since(start), cpu: -1, timings: lat.take()}
		st1 := scrape(hc, metricsURL)
		if st0.cpu >= 0 && st1.cpu >= 0 {
			p.cpu = st1.cpu - st0.cpu
		}
		p.server = st1.since(st0)
		phases = append(phases, p)
		return err
	}

	keys := make([]*rsa.PrivateKey, min(cfg.keys, cfg.devices))
	if len(keys) > 0 {
		bar := newBar(cmd, len(keys), "making keys")
		err := forEach(ctx, len(keys), runtime.GOMAXPROCS(0), bar, func(i int) (err error) {
			keys[i], err = rsa.GenerateKey(rand.Reader, 2048)
			return err
		})
		if err != nil {
			return err
		}
	}

	// Phase 1: enrol.
	devices := make([]*mdmtest.Device, cfg.devices)
	err := measure("enrol", cfg.devices, func() error {
		bar := newBar(cmd, cfg.devices, "enrolling")
		return forEach(ctx, cfg.devices, cfg.concurrency, bar, func(i int) error {
			url := cfg.enrollURL
			if url == "" {
				var link enrollmentResponse
				if err := api.call(cmd, http.MethodPost, "/api/v1/enrollments", enrollmentRequest{Note: "custody sim"}, &link); err != nil {
					return err
				}
				url = link.URL
			}
			opts := mdmtest.EnrollOptions{Roots: roots, HTTPClient: hc, Observe: lat.observe}
			if len(keys) > 0 {
				opts.Key = keys[i%len(keys)]
			}
			start := time.Now()
			d, err := mdmtest.Enroll(ctx, url, opts)
			lat.observe("Enrol (profile, SCEP, check-in)", time.Since(start), err)
			if d != nil {
				d.ReuseSignatures = !cfg.freshSignatures
			}
			devices[i] = d
			return err
		})
	})
	if err != nil {
		return err
	}

	// Phase 2: idle check-ins.
	err = measure("idle check-ins", cfg.devices*cfg.checkins, func() error {
		bar := newBar(cmd, cfg.devices*cfg.checkins, "idle check-ins")
		return forEach(ctx, cfg.devices*cfg.checkins, cfg.concurrency, bar, func(i int) error {
			_, err := devices[i%cfg.devices].Poll(ctx)
			return err
		})
	})
	if err != nil {
		return err
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
		err = measure("command round trips", cfg.devices*cfg.commands, func() error {
			bar := newBar(cmd, cfg.devices, "command round trips")
			return forEach(ctx, cfg.devices, cfg.concurrency, bar, func(i int) error {
				done, err := devices[i].Poll(ctx)
				if err == nil && len(done) != cfg.commands {
					err = fmt.Errorf("device %s ran %d commands, want %d", devices[i].UDID, len(done), cfg.commands)
				}
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// forEach runs fn(0..n-1) on at most conc goroutines, stopping at the first
// error.
func forEach(ctx context.Context, n, conc int, bar *progressbar.ProgressBar, fn func(i int) error) error {
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(conc, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
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
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
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

// serverStats is what the sim reads from a server's Prometheus endpoint:
// the process's CPU seconds (-1 when absent) and the cumulative buckets of
// custody's latency histogram for MDM requests (nil when absent).
type serverStats struct {
	cpu     float64
	buckets []bucket
}

// A bucket is one cumulative histogram bucket: count observations ≤ le.
type bucket struct{ le, count float64 }

const mdmBucketPrefix = `custody_http_request_seconds_bucket{route="mdm",le="`

func scrape(hc *http.Client, url string) serverStats {
	st := serverStats{cpu: -1}
	if url == "" {
		return st
	}
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
		} else if v, ok := strings.CutPrefix(line, mdmBucketPrefix); ok {
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

// since returns the buckets of the observations made after prev.
func (st serverStats) since(prev serverStats) []bucket {
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

func report(w io.Writer, cfg simConfig, phases []phase, lat *latencies) {
	fmt.Fprintf(w, "custody sim apple: %d devices, concurrency %d\n\n", cfg.devices, cfg.concurrency)
	for _, p := range phases {
		rate := float64(p.ops) / p.elapsed.Seconds()
		fmt.Fprintf(w, "%s: %d in %s (%.1f/s)", p.name, p.ops, p.elapsed.Round(time.Millisecond), rate)
		if p.cpu >= 0 && p.ops > 0 {
			fmt.Fprintf(w, ", server CPU %s per op", time.Duration(p.cpu/float64(p.ops)*float64(time.Second)).Round(time.Microsecond))
		}
		fmt.Fprintln(w)
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
			fmt.Fprintf(w, "  %-32s n=%-6.0f p50 %-9s p95 %-9s p99 %s\n", "(server side, all MDM requests)", p.server[n-1].count,
				quantile(p.server, 0.50).Round(10*time.Microsecond), quantile(p.server, 0.95).Round(10*time.Microsecond),
				quantile(p.server, 0.99).Round(10*time.Microsecond))
		}
	}
	lat.mu.Lock()
	defer lat.mu.Unlock()
	for k, n := range lat.errors {
		fmt.Fprintf(w, "errors: %s %d\n", k, n)
	}
}
