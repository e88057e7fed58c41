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
	cmd := &cobra.Command{Use: "devices", Short: "Enrolled Apple devices"}
	client := addAPIFlags(cmd)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List enrolled devices and user channels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var resp struct {
				Devices []deviceJSON `json:"devices"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/devices", nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Devices)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSERIAL\tMODEL\tOS\tSTATUS")
			for _, d := range resp.Devices {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.SerialNumber, d.Model, d.OSVersion, deviceStatus(d))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one device",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var d deviceJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/devices/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			return printJSON(cmd, d)
		},
	}
	cmd.AddCommand(list, show)
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
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
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
	}
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
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
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
	}
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
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
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
	}
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
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
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
		},
	}
	upload.Flags().StringVar(&passwordFile, "password-file", "", "file holding the .p12 (or encrypted key) password")
	cmd.AddCommand(upload)
	return cmd
}
