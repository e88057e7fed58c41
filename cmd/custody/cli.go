package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiClient calls the admin API for the CLI subcommands.
type apiClient struct {
	url, token string
	http       *http.Client
}

// addAPIFlags adds --server, --token and --data to an admin subcommand.
func addAPIFlags(cmd *cobra.Command) func() (*apiClient, error) {
	var server, token, data, tlsCA string
	f := cmd.PersistentFlags()
	f.StringVar(&server, "server", os.Getenv("CUSTODY_SERVER"), "admin API URL (env CUSTODY_SERVER)")
	f.StringVar(&token, "token", os.Getenv("CUSTODY_TOKEN"), "admin API token (env CUSTODY_TOKEN)")
	f.StringVar(&data, "data", "", "read the server URL and token from this local data dir")
	f.StringVar(&tlsCA, "tls-ca", os.Getenv("CUSTODY_TLS_CA"), "PEM CA certificates to trust for the server's TLS certificate, besides the system's (env CUSTODY_TLS_CA)")
	return func() (*apiClient, error) {
		if data == "" && server == "" && token == "" {
			data = envDefault("CUSTODY_DATA", "./custody-data")
		}
		if data != "" {
			info, err := readServerInfo(data)
			if err != nil {
				return nil, err
			}
			tok, err := os.ReadFile(filepath.Join(data, fileAdminToken))
			if err != nil {
				return nil, err
			}
			if server == "" {
				server = info.URL
			}
			if token == "" {
				token = strings.TrimSpace(string(tok))
			}
		}
		if server == "" || token == "" {
			return nil, errors.New("give --server and --token (or CUSTODY_SERVER and CUSTODY_TOKEN), or --data DIR")
		}
		hc := &http.Client{Timeout: time.Minute}
		if tlsCA != "" {
			pem, err := os.ReadFile(tlsCA)
			if err != nil {
				return nil, err
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no PEM certificates", tlsCA)
			}
			hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		}
		return &apiClient{url: strings.TrimRight(server, "/"), token: token, http: hc}, nil
	}
}

// call sends a JSON request and decodes the JSON reply into out.
func (c *apiClient) call(cmd *cobra.Command, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.url+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	_, err = c.send(c.http, req, out)
	return err
}

// send sends req with the admin token and decodes the JSON reply into out
// (when out is not nil) for a 2xx status or one of accept; any other
// status is the API's error message.
func (c *apiClient) send(hc *http.Client, req *http.Request, out any, accept ...int) (int, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 && !slices.Contains(accept, resp.StatusCode) {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return resp.StatusCode, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	if out == nil || len(data) == 0 {
		return resp.StatusCode, nil
	}
	if w, ok := out.(io.Writer); ok { // a file, not JSON
		_, err = w.Write(data)
		return resp.StatusCode, err
	}
	return resp.StatusCode, json.Unmarshal(data, out)
}

func challengeCmd() *cobra.Command {
	var ttl time.Duration
	var note, mintedFor string
	cmd := &cobra.Command{
		Use:   "challenge",
		Short: "Print one fresh one-time SCEP challenge",
		Args:  cobra.NoArgs,
	}
	client := addAPIFlags(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the challenge is valid (default 24h)")
	cmd.Flags().StringVar(&note, "note", "", "note stored with the challenge")
	cmd.Flags().StringVar(&mintedFor, "for", "", "id of what the challenge is for, recorded in the issued certificate")
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
		req := challengeRequest{Note: note, For: mintedFor}
		if ttl != 0 {
			req.TTL = ttl.String()
		}
		var resp challengeResponse
		if err := c.call(cmd, http.MethodPost, "/api/v1/challenges", req, &resp); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.Challenge)
		fmt.Fprintf(cmd.ErrOrStderr(), "challenge %s, valid until %s\n", resp.ID, resp.ExpiresAt.Local().Format(time.RFC3339))
		return nil
	})
	return cmd
}

func certsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "List and revoke issued device certificates"}
	client := addAPIFlags(cmd)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List issued certificates",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Certs []certJSON `json:"certs"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/certs", nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Certs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSUBJECT\tFINGERPRINT (SHA-256)\tNOT AFTER\tREVOKED\tCHALLENGE")
			for _, cert := range resp.Certs {
				revoked := "no"
				if cert.Revoked {
					revoked = cert.RevokedAt.Local().Format(time.DateTime)
				}
				authorised := cert.ChallengeID
				if cert.RenewedFrom != "" {
					authorised = "renewal of " + cert.RenewedFrom[:16]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cert.Serial, cert.Subject, cert.Fingerprint,
					cert.NotAfter.Local().Format(time.DateOnly), revoked, authorised)
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	revoke := &cobra.Command{
		Use:   "revoke FINGERPRINT",
		Short: "Revoke a certificate by its SHA-256 fingerprint",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			fp, ok := normalizeFingerprint(args[0])
			if !ok {
				return fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits)", args[0])
			}
			var cert certJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/certs/"+fp+"/revoke", nil, &cert); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (%s)\n", cert.Fingerprint, cert.Subject)
			return nil
		}),
	}
	cmd.AddCommand(list, revoke)
	return cmd
}

func enrollCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "enroll", Short: "Apple enrollment links"}
	client := addAPIFlags(cmd)
	var ttl time.Duration
	var note, mintedFor string
	newCmd := &cobra.Command{
		Use:   "new",
		Short: "Print a one-time enrollment URL serving a signed profile",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			req := enrollmentRequest{Note: note, For: mintedFor}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			var resp enrollmentResponse
			if err := c.call(cmd, http.MethodPost, "/api/v1/enrollments", req, &resp); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.URL)
			fmt.Fprintf(cmd.ErrOrStderr(), "enrollment %s, valid until %s\n", resp.ID, resp.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		}),
	}
	newCmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the link is valid (default 168h)")
	newCmd.Flags().StringVar(&note, "note", "", "note stored with the link")
	newCmd.Flags().StringVar(&mintedFor, "for", "", "id of what the link is for, recorded on the device certificate")
	var serial, email string
	urlCmd := &cobra.Command{
		Use:   "url (--serial S | --email E)",
		Short: "Print a one-time enrollment URL bound to a record or a user",
		Long: `Print a one-time enrollment URL bound to a pre-enrollment record (by
serial number) or to a user (by email, for self-enrollment of personal or
selectuser devices). The profile it serves carries a SCEP challenge minted
for that link, so the device's certificate, its enrollment and the record
are linked; a device that enrols with it under another serial number (or,
for a user's link, one of another user's records) is refused.`,
		Args: cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			req := linkRequest{Serial: serial, Email: email, Note: note}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			var resp enrollmentResponse
			if err := c.call(cmd, http.MethodPost, "/api/v1/links", req, &resp); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.URL)
			fmt.Fprintf(cmd.ErrOrStderr(), "enrollment %s for %s, valid until %s\n", resp.ID, resp.For, resp.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		}),
	}
	urlCmd.Flags().StringVar(&serial, "serial", "", "serial number of a pre-enrollment record")
	urlCmd.Flags().StringVar(&email, "email", "", "email of a user")
	urlCmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the link is valid (default 168h)")
	urlCmd.Flags().StringVar(&note, "note", "", "note stored with the link")
	cmd.AddCommand(newCmd, urlCmd)
	return cmd
}

// withClient adapts a command that calls the admin API: it gets the
// client from the command's API flags before running fn.
func withClient(client func() (*apiClient, error), fn func(cmd *cobra.Command, c *apiClient, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		return fn(cmd, c, args)
	}
}
