package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/zerotouch/zerotouchtest"
)

// custody sim android: the simulated Android devices of zerotouchtest,
// against its fake of Google's endpoints run in the sim's process, with a
// custody server bound to that fake.

// simAndroidUser is the user whose tokens devices without --serials enrol
// with, unless --email names another.
const simAndroidUser = "custody-sim@example.com"

// newGoogleFake starts the sim's fake of Google's endpoints (a variable so
// that tests can hand the sim a broken one).
var newGoogleFake = zerotouchtest.New

type simAndroidConfig struct {
	devices      int
	devicesGiven bool
	concurrency  int
	checkins     int
	commands     int
	command      string
	serials      string
	email        string
	emailGiven   bool
	workProfile  bool
	googleListen string
	listenGiven  bool
	bind         bool
	stay         bool
	pollEvery    time.Duration
}

func simAndroidCmd() *cobra.Command {
	var cfg simAndroidConfig
	cmd := &cobra.Command{
		Use:   "android (--server URL --token T | --data DIR)",
		Short: "Enrol simulated Android devices through a fake of Google's APIs, measure status reports and command round trips",
		Long: `Enrol simulated Android devices with a custody server, then measure their
status reports and command round trips, with a progress bar per phase and,
at the end, throughput and latency percentiles (p50, p95, p99) per
operation, the server's CPU time per operation and its own latencies for
the Pub/Sub pushes (from /metrics), as custody sim apple does.

The devices are those of zerotouchtest, managed through its fake of the
Android Management API, which the sim runs in its own process (on
--google-listen; by default a free loopback port) and prints the URL of.
The sim binds the server's Android enterprise to an enterprise of that fake
through the admin API (as custody android bind --endpoint does) and sets
the fake's Pub/Sub push deliveries (ENROLLMENT, STATUS_REPORT, COMMAND) to
the server's push URL. A server already bound to an enterprise (Google's,
or the fake of an earlier run, which ended with it) is rebound only with
--bind, which replaces its binding.

The phases:
  enrol             each device gets an enrollment token through the admin
                    API, scans its QR code (a company-owned, fully managed
                    device) or, with --work-profile, opens its link (a
                    personal device with a work profile), and the server
                    must have matched it to a record
  status reports    --checkins polls per device, each a STATUS_REPORT push
  command round     --commands commands (--command, LOCK by default) per
    trips           device queued through the admin API (as custody enqueue
                    does for Android devices), which the device runs at its
                    next poll and reports in COMMAND pushes

With --serials FILE the devices take these serial numbers (one per line, or
the first column of a CSV), in order, and their tokens are minted for the
records (which must be pre-enrolled Android records); without it they take
random serial numbers and their tokens are minted for the user --email
(custody-sim@example.com by default, whom the sim creates as a user without
devices, corporate or with --work-profile personal; another user must
exist), and the server gives each device a record when it enrols. Under the
pre-enrolled-only restriction such devices are refused.

--stay keeps the fake and the devices running after the phases, each device
polling every --poll-interval, so that commands queued later (custody
enqueue SERIAL --type LOCK, or WIPE) reach them, until interrupted.

A phase goes on past a device that fails, and the report counts what really
finished; the command exits non-zero when any device failed or the run was
interrupted before its phases were done.`,
		Args: cobra.NoArgs,
	}
	client := addAPIFlags(cmd)
	f := cmd.Flags()
	f.IntVar(&cfg.devices, "devices", 10, "number of devices (with --serials, all of them unless given)")
	f.IntVar(&cfg.concurrency, "concurrency", 8, "devices talking at once")
	f.IntVar(&cfg.checkins, "checkins", 5, "status reports per device")
	f.IntVar(&cfg.commands, "commands", 5, "command round trips per device")
	f.StringVar(&cfg.command, "command", "LOCK", "the command of the round trips: LOCK or REBOOT (fully managed devices only)")
	f.StringVar(&cfg.serials, "serials", "", "a file of serial numbers of pre-enrolled Android records the devices take, one per line or in a CSV's first column")
	f.StringVar(&cfg.email, "email", simAndroidUser, "without --serials, mint the devices' tokens for this user (the default one is created; another must exist)")
	f.BoolVar(&cfg.workProfile, "work-profile", false, "the devices open the enrollment link as personal devices (work profile) instead of scanning the QR code")
	f.StringVar(&cfg.googleListen, "google-listen", "127.0.0.1:0", "the address of the fake of Google's APIs (the server must reach it)")
	f.BoolVar(&cfg.bind, "bind", false, "rebind a server already bound to an Android enterprise to the sim's fake (replaces its binding)")
	f.BoolVar(&cfg.stay, "stay", false, "after the phases, keep the fake and the devices running until interrupted")
	f.DurationVar(&cfg.pollEvery, "poll-interval", 0, "with --stay, each device polls (runs queued commands, reports its status) this often")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cfg.devices < 1 || cfg.concurrency < 1 || cfg.checkins < 0 || cfg.commands < 0 || cfg.pollEvery < 0 {
			return errors.New("--devices and --concurrency must be positive, --checkins, --commands and --poll-interval not negative")
		}
		cfg.devicesGiven = cmd.Flags().Changed("devices")
		cfg.emailGiven = cmd.Flags().Changed("email")
		cfg.listenGiven = cmd.Flags().Changed("google-listen")
		switch {
		case cfg.command != "LOCK" && cfg.command != "REBOOT":
			return fmt.Errorf("--command %q: want LOCK or REBOOT", cfg.command)
		case cfg.command == "REBOOT" && cfg.workProfile:
			return errors.New("--command REBOOT needs fully managed devices: not with --work-profile")
		case cfg.stay && cfg.pollEvery == 0:
			return errors.New("--stay needs --poll-interval: the fake's devices get no pushes, so only polling brings them commands")
		case !cfg.stay && cfg.pollEvery != 0:
			return errors.New("--poll-interval keeps devices running: give --stay too")
		case cfg.serials != "" && cfg.emailGiven:
			return errors.New("give --serials or --email, not both")
		}
		api, err := client()
		if err != nil {
			return fmt.Errorf("give a custody server: --server URL --token T, or --data DIR (%w)", err)
		}
		setGCPercent()
		return runSimAndroid(cmd, cfg, api)
	}
	return cmd
}

func runSimAndroid(cmd *cobra.Command, cfg simAndroidConfig, api *apiClient) (err error) {
	ctx := cmd.Context()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	want := cfg.devices
	var serials []string
	if cfg.serials != "" {
		if serials, err = readSerials(cfg.serials); err != nil {
			return err
		}
		for i, s := range serials {
			if serials[i], err = enroll.NormalizeSerial(s); err != nil {
				return fmt.Errorf("%s: %w", cfg.serials, err)
			}
		}
		if cfg.devicesGiven && cfg.devices > len(serials) {
			return fmt.Errorf("--devices %d, but only %d serial numbers", cfg.devices, len(serials))
		}
		if !cfg.devicesGiven {
			want = len(serials)
		}
		serials = serials[:want]
	}

	// The fake of Google's endpoints, in this process.
	fake := newGoogleFake()
	defer fake.Close()
	googleURL := fake.URL
	if cfg.listenGiven {
		ln, err := net.Listen("tcp", cfg.googleListen)
		if err != nil {
			return fmt.Errorf("--google-listen: %w", err)
		}
		target, _ := url.Parse(fake.URL)
		proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ReadHeaderTimeout: 10 * time.Second}
		go proxy.Serve(ln)
		defer proxy.Close()
		googleURL = "http://" + ln.Addr().String()
	}
	fmt.Fprintf(errOut, "fake Google APIs (Android Management, zero-touch) on %s\n", googleURL)
	pushURL, err := simAndroidBind(cmd, cfg, api, fake, googleURL)
	if err != nil {
		return err
	}
	fake.PushURL = pushURL // before any device exists
	if serials == nil && !cfg.emailGiven {
		if err := simAndroidUserImport(cmd, api, cfg); err != nil {
			return fmt.Errorf("creating the sim's user %s: %w", cfg.email, err)
		}
	}

	lat := &latencies{byKind: map[string][]time.Duration{}, errors: map[string]int{}}
	hc := &http.Client{Timeout: time.Minute}
	m := meter{hc: hc, metricsURL: api.url + "/metrics", route: "android-push", what: "(server side, Pub/Sub pushes)", lat: lat}
	var phases []phase
	var stayed *stayReport
	// What was done is reported even when a phase fails or the run is
	// interrupted.
	defer func() {
		if len(phases) > 0 || stayed != nil {
			report(out, fmt.Sprintf("custody sim android: %d devices, concurrency %d", want, cfg.concurrency), phases, stayed, lat)
		}
		if err == nil && ctx.Err() != nil && !cfg.stay {
			err = fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}()
	measure := func(name string, ops int, fn func() outcome) outcome {
		p := m.measure(name, ops, fn)
		phases = append(phases, p)
		return p.outcome
	}
	sim := &androidSim{cmd: cmd, cfg: cfg, api: api, fake: fake, lat: lat}

	// Phase 1: enrol.
	enrolled := make([]*zerotouchtest.Device, want)
	o := measure("enrol", want, func() outcome {
		bar := newBar(cmd, want, "enrolling")
		return forEach(ctx, want, cfg.concurrency, bar, func(i int) (err error) {
			serial := ""
			if serials != nil {
				serial = serials[i]
			}
			enrolled[i], err = sim.enrol(serial)
			return err
		})
	})
	devices := slices.DeleteFunc(enrolled, func(d *zerotouchtest.Device) bool { return d == nil })
	if o.interrupted {
		return nil
	}
	if len(devices) == 0 {
		return errSimFailed
	}

	// Phase 2: status reports.
	if cfg.checkins > 0 {
		n := len(devices) * cfg.checkins
		o := measure("status reports", n, func() outcome {
			bar := newBar(cmd, n, "status reports")
			return forEach(ctx, n, cfg.concurrency, bar, func(i int) error {
				start := time.Now()
				_, err := devices[i%len(devices)].Poll()
				lat.observe("status report (poll, push)", time.Since(start), err)
				return err
			})
		})
		if o.interrupted {
			return nil
		}
	}

	// Phase 3: command round trips, queued through the admin API.
	if cfg.commands > 0 {
		o := measure("command round trips", len(devices)*cfg.commands, func() outcome {
			bar := newBar(cmd, len(devices), "command round trips")
			o := forEach(ctx, len(devices), cfg.concurrency, bar, func(i int) error {
				return sim.roundTrips(devices[i])
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
		stayed = stayAndroid(cmd, cfg, devices)
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

// simAndroidBind binds the server's Android enterprise to a new enterprise
// of the fake, unless the server is bound already and --bind was not
// given, and returns the server's Pub/Sub push URL.
func simAndroidBind(cmd *cobra.Command, cfg simAndroidConfig, api *apiClient, fake *zerotouchtest.Server, googleURL string) (string, error) {
	bound, err := androidBound(cmd, api)
	if err != nil {
		return "", fmt.Errorf("asking the server whether it is bound to an Android enterprise: %w", err)
	}
	if bound && !cfg.bind {
		return "", errors.New("the server is bound to an Android enterprise already: give --bind to rebind it to the sim's fake of Google " +
			"(this replaces the server's binding; a server bound by an earlier sim run needs it too, as that run's fake is gone)")
	}
	enterprise := fake.AddEnterprise("custody sim")
	var st androidStatusJSON
	req := androidBindRequest{Enterprise: enterprise, Endpoint: googleURL}
	if err := api.call(cmd, http.MethodPost, "/api/v1/android/bind", req, &st); err != nil {
		return "", fmt.Errorf("binding the server's Android enterprise to the sim's fake of Google at %s: %w", googleURL, err)
	}
	if st.PushURL == "" {
		return "", errors.New("binding the server's Android enterprise: the server gave no Pub/Sub push URL")
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "server bound to %s of the fake; its pushes go to the server's /android/pubsub\n", enterprise)
	return st.PushURL, nil
}

// androidBound asks a server whether it is bound to an Android enterprise.
// The admin API has no status call, but its token call answers 409 before
// anything else when the server is not bound, and 400 to a request naming
// neither a record nor a user when it is (minting nothing).
func androidBound(cmd *cobra.Command, api *apiClient) (bool, error) {
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, api.url+"/api/v1/android/tokens", strings.NewReader("{}"))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	status, err := api.send(api.http, req, nil, http.StatusBadRequest, http.StatusConflict)
	switch {
	case err != nil:
		return false, err
	case status == http.StatusConflict:
		return false, nil
	case status == http.StatusBadRequest:
		return true, nil
	}
	return false, fmt.Errorf("POST /api/v1/android/tokens without a record or user answered %d", status)
}

// simAndroidUserImport creates (or keeps) the sim's user, without devices:
// corporate, so that its tokens admit company-owned devices, or personal
// with --work-profile.
func simAndroidUserImport(cmd *cobra.Command, api *apiClient, cfg simAndroidConfig) error {
	ownership := enroll.OwnershipCorporate
	if cfg.workProfile {
		ownership = enroll.OwnershipPersonal
	}
	csv := fmt.Sprintf("name,email,ownership\ncustody sim,%s,%s\n", cfg.email, ownership)
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, api.url+"/api/v1/users/import", strings.NewReader(csv))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/csv")
	_, err = api.send(api.http, req, nil)
	return err
}

// An androidSim is what the phases' devices share.
type androidSim struct {
	cmd  *cobra.Command
	cfg  simAndroidConfig
	api  *apiClient
	fake *zerotouchtest.Server
	lat  *latencies
}

// enrol enrols one device: it takes serial (a random one when empty),
// gets a token for its record or the sim's user, scans the token's QR code
// or opens its link, and checks that the server matched it to a record.
func (s *androidSim) enrol(serial string) (*zerotouchtest.Device, error) {
	req := androidTokenRequest{Serial: serial}
	if serial == "" {
		b := make([]byte, 5)
		rand.Read(b)
		serial = "SIM" + strings.ToUpper(hex.EncodeToString(b))
		req = androidTokenRequest{Email: s.cfg.email}
	}
	var tok enroll.AndroidToken
	start := time.Now()
	err := s.api.call(s.cmd, http.MethodPost, "/api/v1/android/tokens", req, &tok)
	s.lat.observe("token (admin API)", time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("minting its token: %w", err)
	}
	info := zerotouchtest.DeviceInfo{Serial: serial}
	var d *zerotouchtest.Device
	start = time.Now()
	if s.cfg.workProfile {
		d, err = s.fake.OpenLink(tok.Link, info)
		s.lat.observe("link (ENROLLMENT push)", time.Since(start), err)
	} else {
		d, err = s.fake.ScanQR(tok.QR, info)
		s.lat.observe("QR scan (ENROLLMENT push)", time.Since(start), err)
	}
	if err != nil {
		return nil, err
	}
	// The push has been answered: the server has bound the device to a
	// record, or refused it.
	var row inventoryJSON
	start = time.Now()
	err = s.api.call(s.cmd, http.MethodGet, "/api/v1/inventory/"+url.PathEscape(serial), nil, &row)
	s.lat.observe("record check (admin API)", time.Since(start), err)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the server has no record of the enrolled device (refused?): %w", err)
	case row.Status != string(enroll.StatusEnrolled) || row.ID != d.Name:
		return nil, fmt.Errorf("the server did not bind the enrolled device to its record %s (status %s, enrollment %q; refused? see custody trace %s)",
			row.Serial, row.Status, row.ID, row.Serial)
	}
	return d, nil
}

// roundTrips queues --commands commands for a device through the admin
// API, then lets the device poll, run them and report them.
func (s *androidSim) roundTrips(d *zerotouchtest.Device) error {
	for range s.cfg.commands {
		start := time.Now()
		err := s.api.call(s.cmd, http.MethodPost, "/api/v1/commands", commandRequest{Devices: []string{d.Info.Serial}, RequestType: s.cfg.command}, nil)
		s.lat.observe("command (admin API)", time.Since(start), err)
		if err != nil {
			return fmt.Errorf("queueing %s: %w", s.cfg.command, err)
		}
	}
	start := time.Now()
	ran, err := d.Poll()
	s.lat.observe("poll (commands, COMMAND pushes)", time.Since(start), err)
	if err == nil && len(ran) != s.cfg.commands {
		err = fmt.Errorf("the device ran %d commands, want %d", len(ran), s.cfg.commands)
	}
	return err
}

// stayAndroid keeps the devices polling every --poll-interval, running
// the commands queued meanwhile, until the run is interrupted; a wiped
// device stops.
func stayAndroid(cmd *cobra.Command, cfg simAndroidConfig, devices []*zerotouchtest.Device) *stayReport {
	ctx := cmd.Context()
	rep := &stayReport{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, d := range devices {
		wg.Go(func() {
			// Spread the devices over the interval.
			t := time.NewTimer(time.Duration(int64(cfg.pollEvery) * int64(i) / int64(len(devices))))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				ran, err := d.Poll()
				wiped := errors.Is(err, zerotouchtest.ErrWiped)
				mu.Lock()
				rep.polls++
				rep.commands += len(ran)
				if err != nil && !wiped && ctx.Err() == nil {
					rep.failed++
					if msg := err.Error(); len(rep.errs) < 3 && !slices.Contains(rep.errs, msg) {
						rep.errs = append(rep.errs, msg)
					}
				}
				mu.Unlock()
				if wiped {
					return
				}
				t.Reset(cfg.pollEvery)
			}
		})
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%d devices staying, each polling every %s (queue commands with custody enqueue SERIAL --type LOCK); interrupt to stop\n",
		len(devices), cfg.pollEvery)
	start := time.Now()
	<-ctx.Done()
	wg.Wait()
	rep.elapsed = time.Since(start)
	return rep
}
