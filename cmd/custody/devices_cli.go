package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/micromdm/plist"
	"github.com/spf13/cobra"
)

func devicesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "Devices: pre-enrolled and enrolled"}
	client := addAPIFlags(cmd)
	var asJSON bool
	var status, group string
	list := &cobra.Command{
		Use:   "list",
		Short: "List pre-enrolled and enrolled devices (and user channels)",
		Long: `List the inventory: every pre-enrollment record, with its device once
it has enrolled, then enrolled devices and user channels without a record.
--status (pre-approved, invited, enrolled, unenrolled, wipe-pending, wiped)
and --group filter it.`,
		Args: cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			q := url.Values{}
			if status != "" {
				q.Set("status", status)
			}
			if group != "" {
				q.Set("group", group)
			}
			var resp struct {
				Devices []inventoryJSON `json:"devices"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/inventory?"+q.Encode(), nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Devices)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATUS\tPLATFORM\tUSER\tGROUPS\tID\tMODEL\tOS")
			for _, d := range resp.Devices {
				id := orDash(d.ID)
				if d.PreEnrolled {
					id = "(pre-enrolled)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(d.Serial), d.Status, orDash(string(d.Platform)),
					orDash(d.UserEmail), orDash(strings.Join(d.Groups, ",")), id, orDash(d.Model), orDash(d.OSVersion))
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVar(&status, "status", "", "only devices with this status")
	list.Flags().StringVar(&group, "group", "", "only devices in this group (directly or through their user)")
	var showJSON bool
	show := &cobra.Command{
		Use:   "show SERIAL|ID",
		Short: "Show one device by serial number or enrollment ID",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var d inventoryJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/inventory/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			if showJSON {
				return printJSON(cmd, d)
			}
			printDevice(cmd, &d)
			return nil
		}),
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	cmd.AddCommand(list, show)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printDevice shows a device as an administrator reads it. A pre-enrolled
// device shows only what its record says.
func printDevice(cmd *cobra.Command, d *inventoryJSON) {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	if d.PreEnrolled {
		fmt.Fprintln(tw, "Pre-enrolled device: it has not enrolled yet, so only its record is known.")
	}
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("Serial number", d.Serial)
	line("Status", d.Status)
	line("Platform", string(d.Platform))
	line("Ownership", string(d.Ownership))
	user := d.UserEmail
	if d.UserName != "" {
		user = fmt.Sprintf("%s <%s>", d.UserName, d.UserEmail)
	}
	line("User", user)
	line("Device name", d.DeviceName)
	line("Groups", strings.Join(d.Groups, ", "))
	if d.Source != "" {
		line("Record", fmt.Sprintf("from %s, %s", d.Source, d.CreatedAt.Local().Format(time.DateTime)))
	}
	if !d.PreEnrolled {
		line("Enrollment", d.ID)
		line("Model", d.Model)
		line("OS", d.OSVersion)
		line("Certificate", d.CertFingerprint)
		line("Enrollment state", deviceStatus(d.deviceJSON))
		if !d.AuthenticatedAt.IsZero() {
			line("Authenticated", d.AuthenticatedAt.Local().Format(time.DateTime))
		}
		if !d.TokenUpdateAt.IsZero() {
			line("Token update", d.TokenUpdateAt.Local().Format(time.DateTime))
		}
		switch {
		case d.AwaitingConfiguration:
			line("Setup Assistant", "awaiting configuration since "+d.AwaitingSince.Local().Format(time.DateTime))
		case !d.ConfiguredAt.IsZero():
			line("Setup Assistant", "released, configured "+d.ConfiguredAt.Local().Format(time.DateTime))
		}
	}
	tw.Flush()
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func enqueueCmd() *cobra.Command {
	var requestType, plistFile string
	var params []string
	var noPush bool
	cmd := &cobra.Command{
		Use:   "enqueue ID... (--type REQUESTTYPE [--param KEY=VALUE ...] | --plist FILE)",
		Short: "Queue an MDM command for devices",
		Long: `Queue an MDM command for one or more devices.

--param values are typed: true and false are booleans, integers are
integers, @FILE is the file's bytes (data), anything else is a string; a key
given more than once is an array. --plist takes a whole command dictionary,
RequestType included.`,
		Args: cobra.MinimumNArgs(1),
	}
	client := addAPIFlags(cmd)
	cmd.Flags().StringVar(&requestType, "type", "", "the command's RequestType, e.g. DeviceInformation")
	cmd.Flags().StringArrayVar(&params, "param", nil, "a command key as KEY=VALUE (repeatable)")
	cmd.Flags().StringVar(&plistFile, "plist", "", "a plist file with the command dictionary")
	cmd.Flags().BoolVar(&noPush, "no-push", false, "queue without pushing; devices fetch at their next check-in")
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
		var dict map[string]any
		switch {
		case plistFile != "" && (requestType != "" || len(params) > 0):
			return fmt.Errorf("give --plist, or --type with --param, not both")
		case plistFile != "":
			data, err := os.ReadFile(plistFile)
			if err != nil {
				return err
			}
			if err := plist.Unmarshal(data, &dict); err != nil {
				return fmt.Errorf("%s: not a plist dictionary: %w", plistFile, err)
			}
		case requestType == "":
			return fmt.Errorf("give --type or --plist")
		default:
			var err error
			if dict, err = parseParams(params); err != nil {
				return err
			}
			dict["RequestType"] = requestType
		}
		raw, err := plist.Marshal(dict)
		if err != nil {
			return err
		}
		var resp commandResponse
		if err := c.call(cmd, http.MethodPost, "/api/v1/commands", commandRequest{Devices: args, Plist: raw, NoPush: noPush}, &resp); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.CommandUUID)
		reportPushes(cmd, resp.Pushes)
		return nil
	})
	return cmd
}

// parseParams turns KEY=VALUE arguments into typed command keys.
func parseParams(params []string) (map[string]any, error) {
	out := map[string]any{}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q: want KEY=VALUE", p)
		}
		var val any = v
		switch {
		case v == "true" || v == "false":
			val = v == "true"
		case strings.HasPrefix(v, "@"):
			data, err := os.ReadFile(v[1:])
			if err != nil {
				return nil, fmt.Errorf("--param %s: %w", k, err)
			}
			val = data
		default:
			if i, err := strconv.ParseInt(v, 10, 64); err == nil {
				val = i
			}
		}
		switch prev := out[k].(type) {
		case nil:
			out[k] = val
		case []any:
			out[k] = append(prev, val)
		default:
			out[k] = []any{prev, val}
		}
	}
	return out, nil
}

func commandsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "commands ID",
		Short: "Show a device's queued commands and results",
		Args:  cobra.ExactArgs(1),
	}
	client := addAPIFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, results with their plists")
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
		var resp struct {
			Queue   []queuedJSON `json:"queue"`
			Results []resultJSON `json:"results"`
		}
		if err := c.call(cmd, http.MethodGet, "/api/v1/devices/"+url.PathEscape(args[0])+"/commands", nil, &resp); err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd, resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "COMMAND UUID\tTYPE\tSTATUS\tTIME")
		for _, q := range resp.Queue {
			status := "queued"
			if q.NotNow {
				status = "queued (NotNow)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", q.CommandUUID, q.RequestType, status, q.EnqueuedAt.Local().Format(time.DateTime))
		}
		for _, r := range resp.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.CommandUUID, r.RequestType, r.Status, r.ReceivedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	})
	return cmd
}

// reportPushes prints failed pushes on stderr.
func reportPushes(cmd *cobra.Command, pushes []pushResultJSON) int {
	failed := 0
	for _, p := range pushes {
		if p.Error != "" {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "push to %s failed: %s\n", p.Device, p.Error)
		}
	}
	return failed
}

func pushCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "push ID...",
		Short: "Push devices so they check in now",
		Args:  cobra.MinimumNArgs(1),
	}
	client := addAPIFlags(cmd)
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
		var resp struct {
			Results []pushResultJSON `json:"results"`
		}
		if err := c.call(cmd, http.MethodPost, "/api/v1/push", pushRequest{Devices: args}, &resp); err != nil {
			return err
		}
		for _, r := range resp.Results {
			if r.Error == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "pushed %s (apns-id %s)\n", r.Device, r.APNsID)
			}
		}
		if failed := reportPushes(cmd, resp.Results); failed > 0 {
			return fmt.Errorf("%d of %d pushes failed", failed, len(resp.Results))
		}
		return nil
	})
	return cmd
}

func pushCertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pushcert", Short: "The APNs MDM push certificate"}
	client := addAPIFlags(cmd)
	var passwordFile string
	upload := &cobra.Command{
		Use:   "upload FILE",
		Short: "Upload the MDM push certificate (PEM with its key, or .p12)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var req pushCertRequest
			if passwordFile != "" {
				pw, err := os.ReadFile(passwordFile)
				if err != nil {
					return err
				}
				req.Password = strings.TrimRight(string(pw), "\r\n")
			}
			if strings.Contains(string(data), "-----BEGIN") {
				req.PEM = string(data)
			} else {
				req.P12 = data
			}
			var resp pushCertResponse
			if err := c.call(cmd, http.MethodPost, "/api/v1/pushcert", req, &resp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "push certificate for topic %s, valid until %s\n", resp.Topic, resp.NotAfter)
			return nil
		}),
	}
	upload.Flags().StringVar(&passwordFile, "password-file", "", "file holding the .p12 (or encrypted key) password")
	cmd.AddCommand(upload)
	return cmd
}

func deviceStatus(d deviceJSON) string {
	switch {
	case !d.WipedAt.IsZero():
		return "wiped " + d.WipedAt.Local().Format(time.DateTime)
	case d.Enabled:
		return "enrolled"
	default:
		return "not enrolled"
	}
}
