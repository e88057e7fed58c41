package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/sideshow/apns2"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
)

// gcPercent is the GOGC that custody serve and custody sim run at when the
// environment sets none: their live heaps are a few MiB, and at Go's
// default of 100 they would collect garbage every few hundred requests.
const gcPercent = 400

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

func serveCmd() *cobra.Command {
	var (
		dataPath, listen, baseURL, tlsCert, tlsKey, logFormat string
		store                                                 storageFlags
		debugLog                                              bool
		certValidity, apnsHost, apnsCA                        string
		webhookURL, webhookSecretFile                         string
		depInterval                                           time.Duration
		offboardingInterval, leaseTTL, adeReleaseAfter        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the reference server",
		Long: `Run the reference server: on the embedded bbolt database in the data dir,
or with --storage postgres --dsn DSN on a PostgreSQL database that several
servers may share (background jobs then run on one of them at a time,
under leases in the database).

The first start initialises the data dir: the device CA, the profile-signing
identity and the admin API token (written to DIR/admin.token). Later starts
reuse them. Every flag has an environment equivalent (CUSTODY_DATA,
CUSTODY_LISTEN, CUSTODY_BASE_URL, CUSTODY_TLS_CERT, CUSTODY_TLS_KEY,
CUSTODY_CERT_VALIDITY, CUSTODY_LOG_FORMAT, CUSTODY_STORAGE, CUSTODY_DSN,
CUSTODY_LEASE_TTL).

The server's live heap is small (a few MiB), so at Go's default GOGC of 100
it would collect garbage every few hundred requests; it runs at GOGC=400
unless the GOGC environment variable says otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			setGCPercent()
			level := slog.LevelInfo
			if debugLog {
				level = slog.LevelDebug
			}
			opts := &slog.HandlerOptions{Level: level}
			var log *slog.Logger
			if logFormat == "json" {
				log = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts))
			} else {
				log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts))
			}
			scheme := "http"
			if tlsCert != "" {
				scheme = "https"
			}
			if baseURL != "" {
				if u, err := url.Parse(baseURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
					return fmt.Errorf("--base-url %q: want an absolute http or https URL", baseURL)
				}
			}

			validity, err := time.ParseDuration(certValidity)
			if err != nil || validity <= 0 {
				return fmt.Errorf("--cert-validity %q: want a positive duration such as 8760h", certValidity)
			}
			data, err := openDataDir(dataPath)
			if err != nil {
				return err
			}
			db, err := store.open(cmd.Context(), dataPath)
			if err != nil {
				return err
			}
			defer db.Close()
			if data.created {
				log.Info("initialised data dir", "dir", dataPath, "ca", data.file(fileCACert))
			}
			abs, _ := filepath.Abs(data.file(fileAdminToken))
			fmt.Fprintf(cmd.ErrOrStderr(), "custody: admin API token in %s\n", abs)

			data.ca.Validity = validity
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			apiURL := scheme + "://" + ln.Addr().String()
			if baseURL == "" {
				// From the bound address, so --listen :0 gets its real port.
				baseURL = apiURL
			}
			apns := mdm.APNsConfig{Host: apnsHost}
			if apnsCA != "" {
				pemData, err := os.ReadFile(apnsCA)
				if err != nil {
					return err
				}
				apns.RootCAs = x509.NewCertPool()
				if !apns.RootCAs.AppendCertsFromPEM(pemData) {
					return fmt.Errorf("--apns-ca %s: no PEM certificates", apnsCA)
				}
			}
			srv, err := newServer(data, db.Stores, log, baseURL, apns)
			if err != nil {
				ln.Close()
				return err
			}
			if webhookURL != "" {
				if webhookSecretFile == "" {
					ln.Close()
					return errors.New("--webhook-url needs --webhook-secret-file: events are signed")
				}
				secret, err := os.ReadFile(webhookSecretFile)
				if err != nil {
					ln.Close()
					return err
				}
				hook := mdm.NewWebhook(webhookURL, bytes.TrimSpace(secret), log)
				defer hook.Close()
				srv.mdm.Events = eventFanout{srv.life, hook}
			}
			srv.dep.interval = depInterval
			if db.kind == "postgres" {
				// Other replicas queue and pause campaign jobs too.
				srv.campaigns.Poll = 2 * time.Second
			}
			log.Info("storage", "backend", db.kind, "replica", srv.replica)
			srv.offboardingInterval = offboardingInterval
			srv.leaseTTL = leaseTTL
			if err := srv.dep.start(cmd.Context()); err != nil {
				ln.Close()
				return err
			}
			// Campaign jobs run until the server stops; a job under way
			// stays running in the database and resumes at the next start.
			campaignsCtx, stopCampaigns := context.WithCancel(cmd.Context())
			campaignsDone := make(chan struct{})
			go func() { srv.underLease(campaignsCtx, "campaigns", srv.campaigns.Run); close(campaignsDone) }()
			defer func() { stopCampaigns(); <-campaignsDone }()
			// The directory's background work: the SCIM mirror repaired,
			// due offboardings carried out, Google synced on schedule.
			directoryCtx, stopDirectory := context.WithCancel(cmd.Context())
			directoryDone := make(chan struct{})
			go func() { srv.underLease(directoryCtx, "directory", srv.runDirectory); close(directoryDone) }()
			defer func() { stopDirectory(); <-directoryDone }()
			// Devices held in Setup Assistant past --ade-release-after are
			// released (those whose assignments are done are released at
			// once, without this).
			srv.life.ReleaseAfter = adeReleaseAfter
			releaseCtx, stopReleases := context.WithCancel(cmd.Context())
			releaseDone := make(chan struct{})
			go func() {
				srv.underLease(releaseCtx, "ade-release", func(ctx context.Context) {
					srv.life.RunReleases(ctx, min(max(adeReleaseAfter/10, time.Second), time.Minute))
				})
				close(releaseDone)
			}()
			defer func() { stopReleases(); <-releaseDone }()
			if err := writeServerInfo(dataPath, serverInfo{URL: apiURL}); err != nil {
				ln.Close()
				return err
			}
			hs := &http.Server{
				Handler:           srv.handler(),
				ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout:       time.Minute,
				WriteTimeout:      time.Minute,
				IdleTimeout:       2 * time.Minute,
				MaxHeaderBytes:    256 << 10,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			log.Info("listening", "addr", ln.Addr().String(), "base_url", baseURL, "scep", baseURL+"/scep", "tls", tlsCert != "")
			err = srv.serveListener(cmd.Context(), hs, ln, tlsCert, tlsKey)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		},
	}
	f := cmd.Flags()
	store.register(f)
	f.StringVar(&dataPath, "data", envDefault("CUSTODY_DATA", "./custody-data"), "data directory")
	f.StringVar(&listen, "listen", envDefault("CUSTODY_LISTEN", "127.0.0.1:9300"), "address to listen on")
	f.StringVar(&baseURL, "base-url", envDefault("CUSTODY_BASE_URL", ""), "public URL devices reach (default derived from --listen)")
	f.StringVar(&tlsCert, "tls-cert", envDefault("CUSTODY_TLS_CERT", ""), "TLS certificate (PEM); without it, plain HTTP for use behind a TLS proxy")
	f.StringVar(&tlsKey, "tls-key", envDefault("CUSTODY_TLS_KEY", ""), "TLS private key (PEM)")
	f.StringVar(&logFormat, "log-format", envDefault("CUSTODY_LOG_FORMAT", "text"), "log format: text or json")
	f.StringVar(&certValidity, "cert-validity", envDefault("CUSTODY_CERT_VALIDITY", scep.DefaultValidity.String()), "validity of issued device certificates")
	f.StringVar(&apnsHost, "apns-host", envDefault("CUSTODY_APNS_HOST", apns2.HostProduction), "APNs provider API URL (a fake or Apple's development host for testing)")
	f.StringVar(&apnsCA, "apns-ca", envDefault("CUSTODY_APNS_CA", ""), "PEM CA certificates to trust for --apns-host, besides the system's")
	f.StringVar(&webhookURL, "webhook-url", envDefault("CUSTODY_WEBHOOK_URL", ""), "POST check-in and command-result events here")
	f.StringVar(&webhookSecretFile, "webhook-secret-file", envDefault("CUSTODY_WEBHOOK_SECRET_FILE", ""), "file with the secret that signs webhook requests (X-Custody-Signature)")
	f.DurationVar(&leaseTTL, "lease-ttl", envDuration("CUSTODY_LEASE_TTL", defaultLeaseTTL), "how long a replica's hold on a background job lasts unless renewed: another replica takes the job over at most this long after its holder dies")
	f.DurationVar(&offboardingInterval, "offboarding-interval", 30*time.Second, "how often due offboardings are looked for")
	f.DurationVar(&adeReleaseAfter, "ade-release-after", envDuration("CUSTODY_ADE_RELEASE_AFTER", enroll.DefaultReleaseAfter), "how long a device held in Setup Assistant (ADE await_device_configured) waits for its assignments before DeviceConfigured releases it anyway")
	f.DurationVar(&depInterval, "dep-sync-interval", envDuration("CUSTODY_DEP_SYNC_INTERVAL", 15*time.Minute), "how often ADE server tokens sync (0: only on demand)")
	f.BoolVar(&debugLog, "debug", false, "log every request")
	return cmd
}
