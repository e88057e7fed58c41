package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
)

func depCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dep",
		Short: "Apple Automated Device Enrollment (Apple Business Manager)",
		Long: `Apple Automated Device Enrollment. Set up once:

  custody dep keypair > custody-ade.pem      upload this in Apple Business Manager
  custody dep token upload server-token.p7m --name abm
  custody dep profile define profile.json     the ADE profile; its url defaults to this server

The server then syncs each token's devices into pre-enrollment records
(source ade) every --dep-sync-interval, and assigns new devices the
token's default profile.`,
	}
	client := addAPIFlags(cmd)

	keypair := &cobra.Command{
		Use:   "keypair",
		Short: "Print the PEM certificate to upload to Apple Business Manager (created on first use)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				PEM string `json:"pem"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/dep/keypair", nil, &resp); err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), resp.PEM)
			return nil
		}),
	}

	var name, tokenName, baseURL, group string
	token := &cobra.Command{Use: "token", Short: "ADE server tokens"}
	upload := &cobra.Command{
		Use:   "upload FILE",
		Short: "Store a server token: the .p7m from Apple Business Manager, or a decrypted JSON token",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var st depStatusJSON
			req := depTokenRequest{Name: tokenName, Token: data, BaseURL: baseURL, Group: group}
			if err := c.call(cmd, http.MethodPost, "/api/v1/dep/tokens", req, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s: server %q of %s, valid until %s\n", st.Name, st.Server, st.Org,
				st.TokenExpiry.Local().Format(time.DateOnly))
			return nil
		}),
	}
	upload.Flags().StringVar(&tokenName, "name", "abm", "a name for the token")
	upload.Flags().StringVar(&baseURL, "base-url", "", "call this URL instead of Apple's (a simulator or a proxy)")
	upload.Flags().StringVar(&group, "group", "", "put the token's devices in this group")
	token.AddCommand(upload)

	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Tokens, accounts, last sync, cursor age and device counts",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Tokens []depStatusJSON `json:"tokens"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/dep/status", nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Tokens)
			}
			if len(resp.Tokens) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no ADE server token: custody dep keypair, then custody dep token upload")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOKEN\tSERVER\tEXPIRES\tLAST SYNC\tCURSOR AGE\tDEVICES\tPROFILE OK\tASSIGN FAILED\tDELETED\tENROLLED\tDEFAULT PROFILE")
			for _, t := range resp.Tokens {
				age := "-"
				if !t.CursorAt.IsZero() {
					age = time.Since(t.CursorAt).Round(time.Second).String()
				}
				last := "never"
				if !t.LastSync.IsZero() {
					last = t.LastSync.Local().Format(time.DateTime)
				}
				if t.LastError != "" {
					last += " (failed)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", t.Name, t.Server, t.TokenExpiry.Local().Format(time.DateOnly),
					last, age, t.Devices, t.ProfileOK, t.AssignFailed, t.Deleted, t.Enrolled, orDash(t.DefaultProfile))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, t := range resp.Tokens {
				if t.LastError != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: last sync failed: %s\n", t.Name, t.LastError)
				}
			}
			return nil
		}),
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var full bool
	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Sync a token's devices now",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Name  string          `json:"name"`
				Stats enroll.ADEStats `json:"stats"`
			}
			if err := c.call(cmd, http.MethodPost, "/api/v1/dep/sync", depSyncRequest{Name: name, Full: full}, &resp); err != nil {
				return err
			}
			st := resp.Stats
			kind := "sync"
			if st.Full {
				kind = "full fetch"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %d pages: %d fetched, %d added, %d modified, %d deleted; default profile assigned to %d (%d failed)\n",
				resp.Name, kind, st.Pages, st.Fetched, st.Added, st.Modified, st.Deleted, st.Assigned, st.AssignFailed)
			return nil
		}),
	}
	syncCmd.Flags().StringVar(&name, "name", "", "the token (needed when there are several)")
	syncCmd.Flags().BoolVar(&full, "full", false, "fetch every device again rather than the changes")

	profile := &cobra.Command{Use: "profile", Short: "ADE profiles"}
	var makeDefault bool
	define := &cobra.Command{
		Use:   "define FILE.json",
		Short: "Define an ADE profile (Apple's JSON); the first one becomes the token's default",
		Long: `Define an ADE profile from a JSON file with Apple's keys (profile_name,
is_supervised, is_mandatory, is_mdm_removable, skip_setup_items...). Its url
defaults to this server's /ade/enroll, where devices send their MachineInfo.
The first profile defined for a token, or one defined with --default, is
assigned to the token's new devices.`,
		Args: cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if !json.Valid(data) {
				return fmt.Errorf("%s is not JSON", args[0])
			}
			var resp struct {
				ProfileUUID string `json:"profile_uuid"`
				Default     bool   `json:"default"`
				URL         string `json:"url"`
			}
			if err := c.call(cmd, http.MethodPost, "/api/v1/dep/profiles", depProfileRequest{Name: name, Profile: data, Default: makeDefault}, &resp); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.ProfileUUID)
			what := "defined"
			if resp.Default {
				what = "defined; new devices get it"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "profile %s %s (url %s)\n", resp.ProfileUUID, what, resp.URL)
			return nil
		}),
	}
	define.Flags().StringVar(&name, "name", "", "the token (needed when there are several)")
	define.Flags().BoolVar(&makeDefault, "default", false, "make it the profile new devices get")

	var serials []string
	var profileUUID string
	printResults := func(cmd *cobra.Command, res map[string]string) {
		keys := make([]string, 0, len(res))
		for k := range res {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", k, res[k])
		}
	}
	assign := &cobra.Command{
		Use:   "assign --serial S...",
		Short: "Assign a profile (the token's default unless --profile) to devices",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Devices map[string]string `json:"devices"`
			}
			if err := c.call(cmd, http.MethodPost, "/api/v1/dep/assign", depSerialsRequest{Name: name, Profile: profileUUID, Serials: serials}, &resp); err != nil {
				return err
			}
			printResults(cmd, resp.Devices)
			return nil
		}),
	}
	assign.Flags().StringArrayVar(&serials, "serial", nil, "a device's serial number (repeatable)")
	assign.Flags().StringVar(&profileUUID, "profile", "", "the profile UUID (default: the token's default profile)")
	assign.Flags().StringVar(&name, "name", "", "the token (needed when there are several)")
	profile.AddCommand(define, assign)

	disown := &cobra.Command{
		Use:   "disown --serial S...",
		Short: "Release devices from the organisation in Apple Business Manager (cannot be undone)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Devices map[string]string `json:"devices"`
			}
			if err := c.call(cmd, http.MethodPost, "/api/v1/dep/disown", depSerialsRequest{Name: name, Serials: serials}, &resp); err != nil {
				return err
			}
			printResults(cmd, resp.Devices)
			return nil
		}),
	}
	disown.Flags().StringArrayVar(&serials, "serial", nil, "a device's serial number (repeatable)")
	disown.Flags().StringVar(&name, "name", "", "the token (needed when there are several)")

	cmd.AddCommand(keypair, token, status, syncCmd, profile, disown)
	return cmd
}
